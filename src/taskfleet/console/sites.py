"""Sites: places made of subnets; which computers and task servers each holds (R3 step 2)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from taskfleet.console.sessions import Changing, Viewing
from taskfleet.console.web import PREFIX, render
from taskfleet.errors import TaskfleetError
from taskfleet.ns import sites
from taskfleet.ns.state import ns_state
from taskfleet.ns.users import Role

router = APIRouter(prefix=PREFIX + "/sites", include_in_schema=False)
Text = Annotated[str, Form()]
HERE = PREFIX + "/sites"


async def _page(
    request: Request, error: TaskfleetError | None = None, form: dict[str, str] | None = None
) -> HTMLResponse:
    async with ns_state(request).session() as session:
        shown = await sites.overview(session)
    context = {
        "sites": shown,
        "form": form or {},
        "error_for": (form or {}).get("for", ""),
        "field_errors": {error.field: error.message} if error and error.field else {},
        "error": error.message if error and not error.field else "",
    }
    status = error.status_code if error else 200
    return await render(request, "sites.html", context, status_code=status, page="sites")


@router.get("")
async def site_list(request: Request, user: Viewing) -> HTMLResponse:
    return await _page(request)


@router.post("")
async def create(request: Request, user: Changing, name: Text = "", subnets: Text = "") -> Response:
    user.require(Role.ADMIN)
    try:
        async with ns_state(request).session() as session:
            listed = [s for s in subnets.split(",") if s.strip()]
            await sites.create(session, name, listed, user.name)
    except TaskfleetError as exc:
        return await _page(request, exc, {"for": "", "name": name, "subnets": subnets})
    return RedirectResponse(HERE, status_code=303)


@router.post("/{name}/subnets")
async def add_subnet(request: Request, name: str, user: Changing, subnet: Text = "") -> Response:
    user.require(Role.ADMIN)
    site_name = name  # until the site is found: the error is shown by its form
    try:
        async with ns_state(request).session() as session:
            site = await sites.find(session, name)
            site_name = site.name
            await sites.add_subnet(session, site, subnet, user.name)
    except TaskfleetError as exc:
        return await _page(request, exc, {"for": site_name, "subnet": subnet})
    return RedirectResponse(HERE, status_code=303)


@router.post("/{name}/subnets/remove")
async def remove_subnet(request: Request, name: str, user: Changing, subnet: Text = "") -> Response:
    user.require(Role.ADMIN)
    async with ns_state(request).session() as session:
        site = await sites.find(session, name)
        await sites.remove_subnet(session, site, subnet, user.name)
    return RedirectResponse(HERE, status_code=303)
