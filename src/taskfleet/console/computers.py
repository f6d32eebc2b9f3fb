"""Computers: a searched, sorted, paged list (on the server), and one computer's page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from taskfleet.console.sessions import Viewing
from taskfleet.console.web import PREFIX, render
from taskfleet.ns import computer_views
from taskfleet.ns.state import ns_state
from taskfleet.ns.users import Role

router = APIRouter(prefix=PREFIX + "/computers", include_in_schema=False)
PAGE_SIZE = 50
COLUMNS = [
    ("name", "Name"),
    ("os", "OS"),
    ("last_contact", "Last contact"),
    ("task_server", "Task server"),
    ("assign_step", "Chosen by"),
]


@router.get("")
async def computer_list(
    request: Request,
    user: Viewing,
    q: str = "",
    sort: str = "name",
    desc: bool = False,
    page: Annotated[int, Query(ge=1, le=10_000_000)] = 1,
) -> HTMLResponse:
    async with ns_state(request).session() as session:
        total, rows = await computer_views.search(
            session, q.strip(), sort, desc, PAGE_SIZE, (page - 1) * PAGE_SIZE
        )
    pages = max(1, -(-total // PAGE_SIZE))
    context = {
        "q": q,
        "sort": sort,
        "desc": desc,
        "page_no": min(page, pages),
        "pages": pages,
        "total": total,
        "rows": rows,
        "columns": COLUMNS,
    }
    # The search box asks for the results only (htmx), so typing is never interrupted.
    template = "_computer_rows.html" if request.headers.get("hx-target") == "results" else None
    return await render(request, template or "computers.html", context, page="computers")


@router.get("/{key}")
async def computer_page(request: Request, key: str, user: Viewing) -> HTMLResponse:
    async with ns_state(request).session() as session:
        computer = await computer_views.detail(session, key, identity=user.can(Role.ADMIN))
    return await render(request, "computer.html", {"c": computer}, page="computers")
