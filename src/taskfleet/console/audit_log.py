"""The audit log: who changed what and when, filtered and paged on the server."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from taskfleet.console.sessions import Viewing
from taskfleet.console.web import PREFIX, render
from taskfleet.ns import audit_queries
from taskfleet.ns.state import ns_state

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
    filters = {"actor": actor.strip(), "action": action.strip(), "target": target.strip()}
    async with ns_state(request).session() as session:
        total = await audit_queries.count(session, **filters)
        offset = (page - 1) * PAGE_SIZE
        rows = await audit_queries.entries(session, **filters, limit=PAGE_SIZE, offset=offset)
        actions = await audit_queries.actions(session)
    context = {
        "entries": rows,
        "total": total,
        "page_no": page,
        "pages": max(1, -(-total // PAGE_SIZE)),
        "actor": actor,
        "action": action,
        "target": target,
        "actions": actions,
    }
    return await render(request, "audit.html", context, page="audit")
