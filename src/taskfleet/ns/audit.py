"""The audit log: who changed what, and when."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.storage.models import AuditEntry, Base


def record(session: AsyncSession, actor: str, action: str, target: str = "", **detail: Any) -> None:
    session.add(
        AuditEntry(at=time.time(), actor=actor, action=action, target=target, detail=detail)
    )


async def record_many(session: AsyncSession, entries: Sequence[tuple[str, str, str]]) -> None:
    """Many entries ``(actor, action, target)`` in one statement (a herd of enrolments)."""
    if entries:
        now = time.time()
        rows = [
            {"at": now, "actor": actor, "action": action, "target": target, "detail": {}}
            for actor, action, target in entries
        ]
        await session.execute(insert(Base.metadata.tables[AuditEntry.__tablename__]), rows)
