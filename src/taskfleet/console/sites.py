"""Sites: places made of subnets; which computers and task servers each holds (R3 step 2)."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.console.sessions import Changing, Viewing
from taskfleet.console.web import PREFIX, render
from taskfleet.errors import TaskfleetError
from taskfleet.ns import audit, sites
from taskfleet.ns.state import ns_state
from taskfleet.ns.users import Role
from taskfleet.storage.models import Computer, Site, TaskServer, is_id

router = APIRouter(prefix=PREFIX + "/sites", include_in_schema=False)


async def _find(session: AsyncSession, key: str) -> Site:
    """By id (the console's forms), else by name: a name may hold '/', '?' or '#'."""
    if is_id(key):
        found = await session.get(Site, int(key))
        if found is not None:
            return found
    return await sites.get(session, key)


Text = Annotated[str, Form()]
HERE = PREFIX + "/sites"


def _inside(addresses: list[str], subnets: list[Any]) -> bool:
    for text in addresses:
        try:
            ip = ipaddress.ip_interface(text).ip
        except ValueError:
            continue
        if any(ip.version == net.version and ip in net for net in subnets):
            return True
    return False


async def _page(
    request: Request, error: TaskfleetError | None = None, form: dict[str, str] | None = None
) -> HTMLResponse:
    async with ns_state(request).session() as session:
        rows = (await session.scalars(select(Site).order_by(Site.name))).all()
        served = await sites.served_by(session)
        servers = (await session.scalars(select(TaskServer))).all()
        fleet = (await session.scalars(select(Computer))).all()
    by_computer = {ts.computer_id: ts for ts in servers}
    shown = []
    for site in rows:
        nets = [ipaddress.ip_network(s) for s in site.subnets]
        inside = [c for c in fleet if _inside(c.addresses, nets)]
        explicit = {ts.name for ts in servers if site.id in served.get(ts.id, set())}
        local = {by_computer[c.id].name for c in inside if c.id in by_computer}
        shown.append(
            {
                "site": site,
                "computers": [c for c in inside if c.id not in by_computer],
                "serving": sorted(explicit | local),
                "explicit": explicit,
            }
        )
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
            site = await sites.create(session, name, listed)
            audit.record(session, user.name, "site.create", site.name, subnets=site.subnets)
    except TaskfleetError as exc:
        return await _page(request, exc, {"for": "", "name": name, "subnets": subnets})
    return RedirectResponse(HERE, status_code=303)


@router.post("/{name}/subnets")
async def add_subnet(request: Request, name: str, user: Changing, subnet: Text = "") -> Response:
    user.require(Role.ADMIN)
    site_name = name  # until the site is found: the error is shown by its form
    try:
        async with ns_state(request).session() as session:
            site = await _find(session, name)
            site_name = site.name
            await sites.add_subnet(session, site, subnet)
            audit.record(session, user.name, "site.add-subnet", site.name, subnet=subnet)
    except TaskfleetError as exc:
        return await _page(request, exc, {"for": site_name, "subnet": subnet})
    return RedirectResponse(HERE, status_code=303)


@router.post("/{name}/subnets/remove")
async def remove_subnet(request: Request, name: str, user: Changing, subnet: Text = "") -> Response:
    user.require(Role.ADMIN)
    async with ns_state(request).session() as session:
        site = await _find(session, name)
        await sites.remove_subnet(session, site, subnet)
        audit.record(session, user.name, "site.remove-subnet", site.name, subnet=subnet)
    return RedirectResponse(HERE, status_code=303)
