"""The audit log: who changed what, and when."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.storage.models import AuditEntry


def record(session: AsyncSession, actor: str, action: str, target: str = "", **detail: Any) -> None:
    session.add(
        AuditEntry(at=time.time(), actor=actor, action=action, target=target, detail=detail)
    )
