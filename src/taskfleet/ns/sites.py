"""Sites: named places made of subnets, and the task servers that serve them."""

from __future__ import annotations

import ipaddress

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import Conflict, InvalidInput, NotFound
from taskfleet.ns.assignment import SiteInfo
from taskfleet.storage.models import Site, TaskServer, TaskServerSite


def normalise_subnet(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        raise InvalidInput(
            f"{text!r} is not a subnet; write it as 10.1.0.0/16", field="subnet"
        ) from None


async def by_id(session: AsyncSession, site_id: int) -> Site:
    site = await session.get(Site, site_id)
    if site is None:
        raise NotFound(f"no site with id {site_id}; 'taskfleet site list' shows them")
    return site


async def get(session: AsyncSession, name: str) -> Site:
    site = await session.scalar(select(Site).where(Site.name == name))
    if site is None:
        raise NotFound(f"no site named {name!r}; 'taskfleet site list' shows them")
    return site


async def create(session: AsyncSession, name: str, subnets: list[str]) -> Site:
    name = name.strip()
    if not name or len(name) > 255:
        raise InvalidInput("a site name must be 1 to 255 characters", field="name")
    if await session.scalar(select(Site.id).where(Site.name == name)):
        raise Conflict(f"a site named {name!r} already exists", field="name")
    site = Site(name=name, subnets=sorted({normalise_subnet(s) for s in subnets}))
    session.add(site)
    await session.flush()
    return site


async def add_subnet(session: AsyncSession, site: Site, subnet: str) -> None:
    site.subnets = sorted({*site.subnets, normalise_subnet(subnet)})


async def remove_subnet(session: AsyncSession, site: Site, subnet: str) -> None:
    normal = normalise_subnet(subnet)
    if normal not in site.subnets:
        raise NotFound(f"site {site.name!r} has no subnet {normal}")
    site.subnets = [s for s in site.subnets if s != normal]


async def serve(session: AsyncSession, site: Site, ts: TaskServer, serving: bool) -> None:
    link = await session.get(TaskServerSite, (ts.id, site.id))
    if serving and link is None:
        session.add(TaskServerSite(task_server_id=ts.id, site_id=site.id))
    elif not serving and link is not None:
        await session.delete(link)


async def served_by(session: AsyncSession) -> dict[int, set[int]]:
    """task server id -> ids of sites it serves explicitly."""
    out: dict[int, set[int]] = {}
    rows = await session.execute(select(TaskServerSite.task_server_id, TaskServerSite.site_id))
    for ts_id, site_id in rows.all():
        out.setdefault(ts_id, set()).add(site_id)
    return out


async def layout(session: AsyncSession) -> tuple[list[SiteInfo], dict[int, set[int]]]:
    """Every site, and the sites each task server serves explicitly, in one query: what
    assignment reads (R3 step 2)."""
    rows = await session.execute(
        select(Site.id, Site.name, Site.subnets, TaskServerSite.task_server_id)
        .outerjoin(TaskServerSite, TaskServerSite.site_id == Site.id)
        .order_by(Site.id)
    )
    found: dict[int, SiteInfo] = {}
    served: dict[int, set[int]] = {}
    for site_id, name, subnets, ts_id in rows.all():
        if site_id not in found:
            found[site_id] = SiteInfo(site_id, name, tuple(subnets or ()))
        if ts_id is not None:
            served.setdefault(ts_id, set()).add(site_id)
    return list(found.values()), served
