"""The audit log: who changed what and when, filtered and paged on the server."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select

from taskfleet.console.sessions import Viewing
from taskfleet.console.web import PREFIX, render
from taskfleet.errors import InvalidInput
from taskfleet.ns.state import ns_state
from taskfleet.storage.models import AuditEntry

router = APIRouter(prefix=PREFIX + "/audit", include_in_schema=False)
PAGE_SIZE = 100


@router.get("")
async def audit_page(
    request: Request,
    user: Viewing,
    actor: Annotated[str, Query(max_length=255)] = "",
    action: Annotated[str, Query(max_length=64)] = "",
    target: Annotated[str, Query(max_length=255)] = "",
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
) -> HTMLResponse:
    if "\x00" in actor + action + target:
        raise InvalidInput("a filter cannot hold a NUL character")
    query = select(AuditEntry)
    if actor.strip():
        query = query.where(AuditEntry.actor == actor.strip())
    if action.strip():
        query = query.where(AuditEntry.action.startswith(action.strip(), autoescape=True))
    if target.strip():
        query = query.where(AuditEntry.target == target.strip())
    async with ns_state(request).session() as session:
        total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = (
            await session.scalars(
                query.order_by(AuditEntry.id.desc()).limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)
            )
        ).all()
        actions = (await session.scalars(select(AuditEntry.action).distinct())).all()
    context = {
        "entries": rows,
        "total": total,
        "page_no": page,
        "pages": max(1, -(-total // PAGE_SIZE)),
        "actor": actor,
        "action": action,
        "target": target,
        "actions": sorted(actions),
    }
    return await render(request, "audit.html", context, page="audit")
