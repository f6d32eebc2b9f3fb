"""Reading the audit log: the console's page and ``GET /api/audit`` ask the same question.

Filters: the actor and the target exactly, the action by its beginning (``collection.``
finds every collection action), typed text matched literally (``ns.like``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import InvalidInput
from taskfleet.ns import like
from taskfleet.ns.fleet_replies import AuditRow
from taskfleet.storage.models import AuditEntry


def _filtered(actor: str, action: str, target: str) -> Any:
    # PostgreSQL cannot compare text holding NUL: refuse it as the person's mistake.
    if "\x00" in actor + action + target:
        raise InvalidInput("a filter cannot hold a NUL character")
    query = select(AuditEntry)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if action:
        query = query.where(AuditEntry.action.like(like.starting_with(action), escape=like.ESCAPE))
    if target:
        query = query.where(AuditEntry.target == target)
    return query


async def entries(
    session: AsyncSession,
    *,
    actor: str = "",
    action: str = "",
    target: str = "",
    limit: int = 100,
    offset: int = 0,
) -> list[AuditRow]:
    """The newest entries first, one page of them."""
    query = _filtered(actor, action, target)
    query = query.order_by(AuditEntry.id.desc()).limit(limit).offset(offset)
    return [
        AuditRow(e.at, e.actor, e.action, e.target, e.detail)
        for e in (await session.scalars(query)).all()
    ]


async def count(
    session: AsyncSession, *, actor: str = "", action: str = "", target: str = ""
) -> int:
    query = _filtered(actor, action, target)
    return await session.scalar(select(func.count()).select_from(query.subquery())) or 0


async def actions(session: AsyncSession) -> list[str]:
    """Every action the log holds, sorted: the console's filter offers them."""
    return sorted((await session.scalars(select(AuditEntry.action).distinct())).all())
