"""Admin API for sites, addressed by id: a name may hold any character (``/``, ``?``, ``#``,
``%``), so a name is never part of a path; ``GET /api/sites?name=`` finds one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from taskfleet.ns import computer_views, registry, sites
from taskfleet.ns.auth import Administrator, Viewer
from taskfleet.ns.collection_replies import SiteServer, SiteSubnets, SiteView, site_subnets
from taskfleet.ns.openapi import errors
from taskfleet.ns.state import ns_state
from taskfleet.protocol.fields import MAX_ID, Name, ShortText, bounded_list
from taskfleet.storage.models import Site

router = APIRouter(prefix="/api", tags=["sites"])
MAX_SUBNETS = 10_000
SiteId = Annotated[int, Path(ge=1, le=MAX_ID, description="the site's id")]


@dataclass
class SiteRequest:
    name: Name
    subnets: Annotated[list[ShortText], bounded_list(MAX_SUBNETS)] = field(default_factory=list)


@dataclass
class SubnetRequest:
    subnet: ShortText


@dataclass
class SiteServerRequest:
    task_server: Name  # its name or id


def view(site: Site, task_servers: list[str]) -> SiteView:
    return SiteView(site.id, site.name, site.subnets, task_servers)


@router.get("/sites")
async def list_sites(
    request: Request,
    _: Viewer,
    name: Annotated[Name | None, Query(description="only the site of this name")] = None,
) -> list[SiteView]:
    async with ns_state(request).session() as session:
        served = await sites.served_by(session)
        names = await computer_views.task_server_names(session)
        rows = await sites.listed(session, name)
        return [
            view(
                s,
                sorted(names[t] for t, ids in served.items() if s.id in ids and t in names),
            )
            for s in rows
        ]


@router.post("/sites", status_code=201, responses=errors(409))
async def create_site(request: Request, body: SiteRequest, admin: Administrator) -> SiteView:
    async with ns_state(request).session() as session:
        site = await sites.create(session, body.name, body.subnets, admin.name)
        return view(site, [])


@router.post("/sites/{site_id}/subnets")
async def add_subnet(
    request: Request, site_id: SiteId, body: SubnetRequest, admin: Administrator
) -> SiteSubnets:
    async with ns_state(request).session() as session:
        site = await sites.by_id(session, site_id)
        await sites.add_subnet(session, site, body.subnet, admin.name)
        return site_subnets(site)


@router.post("/sites/{site_id}/subnets/remove")
async def remove_subnet(
    request: Request, site_id: SiteId, body: SubnetRequest, admin: Administrator
) -> SiteSubnets:
    async with ns_state(request).session() as session:
        site = await sites.by_id(session, site_id)
        await sites.remove_subnet(session, site, body.subnet, admin.name)
        return site_subnets(site)


@router.post("/sites/{site_id}/taskservers")
async def add_site_server(
    request: Request, site_id: SiteId, body: SiteServerRequest, admin: Administrator
) -> SiteServer:
    """Make a task server (its name or id) serve the site, besides its own address's."""
    async with ns_state(request).session() as session:
        site = await sites.by_id(session, site_id)
        ts = await registry.find(session, body.task_server)
        await sites.serve(session, site, ts, True, admin.name)
        return SiteServer(site.id, site.name, ts.name)
