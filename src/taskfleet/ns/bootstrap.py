"""First start: built-in collections and tasks, and the first admin credential."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.ns import collections, inventory, tasks, users
from taskfleet.protocol.private_file import write_private
from taskfleet.storage.models import ApiUser

ADMIN_CREDENTIAL_FILE = "admin.credential"
ADMIN_PASSWORD_FILE = "admin.password"


async def ensure_builtins(session: AsyncSession) -> None:
    await collections.ensure_builtins(session)
    await tasks.ensure_builtins(session)
    await inventory.ensure_builtin(session)


async def ensure_admin(session: AsyncSession, data_dir: Path) -> tuple[Path, Path] | None:
    """Create the first admin: its API credential and console password, each in a file
    only the NS's user can read. None if a user exists already."""
    if await session.scalar(select(ApiUser.id).limit(1)) is not None:
        return None
    password = users.new_password()
    _, credential = await users.create(session, "admin", "admin", password, None)
    data_dir.mkdir(parents=True, exist_ok=True)
    credential_file = write_private(data_dir / ADMIN_CREDENTIAL_FILE, f"{credential}\n")
    password_file = write_private(data_dir / ADMIN_PASSWORD_FILE, f"{password}\n")
    return credential_file, password_file
