"""First start: built-in collections and tasks, and the first admin credential."""

from __future__ import annotations

import os
import time
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.ns import collections, runs
from taskfleet.protocol.transport import Credential, hash_secret, new_secret
from taskfleet.storage.models import ApiUser

ADMIN_CREDENTIAL_FILE = "admin.credential"


async def ensure_builtins(session: AsyncSession) -> None:
    await collections.ensure_builtins(session)
    await runs.ensure_builtin_tasks(session)


async def ensure_admin(session: AsyncSession, data_dir: Path) -> Path | None:
    """Create the first admin and write its credential file; None if an admin exists."""
    if await session.scalar(select(ApiUser.id).limit(1)) is not None:
        return None
    secret = new_secret()
    user = ApiUser(
        name="admin", role="admin", credential_hash=hash_secret(secret), created_at=time.time()
    )
    session.add(user)
    await session.flush()
    path = data_dir / ADMIN_CREDENTIAL_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(str(Credential("admin", user.id, secret)) + "\n")
    return path
