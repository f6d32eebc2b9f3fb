"""Task servers: pending ones first, approve and revoke with a confirmation (R1, R2)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from taskfleet.console.sessions import Changing, Viewing
from taskfleet.console.web import PREFIX, render
from taskfleet.ns import registry
from taskfleet.ns.state import ns_state
from taskfleet.ns.users import Role
from taskfleet.protocol.messages import Approval

router = APIRouter(prefix=PREFIX + "/taskservers", include_in_schema=False)
ORDER: dict[str, int] = {Approval.PENDING: 0, Approval.REVOKED: 1, Approval.APPROVED: 2}


async def _page(request: Request, notice: str = "") -> HTMLResponse:
    async with ns_state(request).session() as session:
        servers = await registry.list_all(session)
    servers.sort(key=lambda s: (ORDER.get(s.approval, 3), s.name))
    context = {"servers": servers, "notice": notice}
    return await render(request, "taskservers.html", context, page="taskservers")


@router.get("")
async def task_servers(request: Request, user: Viewing) -> HTMLResponse:
    return await _page(request)


@router.post("/{name}/approve")
async def approve(request: Request, name: str, user: Changing) -> HTMLResponse:
    user.require(Role.ADMIN)
    ts = await registry.set_approval(ns_state(request), name, Approval.APPROVED, user.name)
    return await _page(request, f"Task server {ts.name} is approved: it may now serve agents.")


@router.post("/{name}/revoke")
async def revoke(request: Request, name: str, user: Changing) -> HTMLResponse:
    user.require(Role.ADMIN)
    ts = await registry.set_approval(ns_state(request), name, Approval.REVOKED, user.name)
    return await _page(
        request, f"Task server {ts.name} is revoked: every call it makes is refused from now on."
    )
