"""Sites: named places made of subnets, and the task servers that serve them."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import Conflict, InvalidInput, NotFound
from taskfleet.ns import audit
from taskfleet.ns.assignment_rules import SiteInfo, interfaces, networks, within
from taskfleet.storage.models import Computer, Site, TaskServer, TaskServerSite, is_id


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


async def find(session: AsyncSession, key: str) -> Site:
    """By id (the console's forms), else by name: a name may hold '/', '?' or '#'."""
    if is_id(key):
        found = await session.get(Site, int(key))
        if found is not None:
            return found
    return await get(session, key)


async def listed(session: AsyncSession, name: str | None = None) -> list[Site]:
    """Every site by name, or the one of this name."""
    query = select(Site).order_by(Site.name)
    if name is not None:
        query = query.where(Site.name == name)
    return list((await session.scalars(query)).all())


async def create(session: AsyncSession, name: str, subnets: list[str], actor: str) -> Site:
    name = name.strip()
    if not name or len(name) > 255:
        raise InvalidInput("a site name must be 1 to 255 characters", field="name")
    if await session.scalar(select(Site.id).where(Site.name == name)):
        raise Conflict(f"a site named {name!r} already exists", field="name")
    site = Site(name=name, subnets=sorted({normalise_subnet(s) for s in subnets}))
    session.add(site)
    await session.flush()
    audit.record(session, actor, "site.create", site.name, subnets=site.subnets)
    return site


async def add_subnet(session: AsyncSession, site: Site, subnet: str, actor: str) -> None:
    site.subnets = sorted({*site.subnets, normalise_subnet(subnet)})
    audit.record(session, actor, "site.add-subnet", site.name, subnet=subnet)


async def remove_subnet(session: AsyncSession, site: Site, subnet: str, actor: str) -> None:
    normal = normalise_subnet(subnet)
    if normal not in site.subnets:
        raise NotFound(f"site {site.name!r} has no subnet {normal}")
    site.subnets = [s for s in site.subnets if s != normal]
    audit.record(session, actor, "site.remove-subnet", site.name, subnet=subnet)


async def serve(
    session: AsyncSession, site: Site, ts: TaskServer, serving: bool, actor: str
) -> None:
    link = await session.get(TaskServerSite, (ts.id, site.id))
    if serving and link is None:
        session.add(TaskServerSite(task_server_id=ts.id, site_id=site.id))
    elif not serving and link is not None:
        await session.delete(link)
    action = "site.add-taskserver" if serving else "site.remove-taskserver"
    audit.record(session, actor, action, site.name, task_server=ts.name)


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


@dataclass
class SiteOverview:
    """A site as the console shows it: the computers in it and who serves them."""

    site: Site
    computers: list[Computer]  # in one of its subnets, task servers left out
    serving: list[str]  # names of task servers serving it, explicitly or from inside
    explicit: set[str]  # of those, the ones told to serve it


async def overview(session: AsyncSession) -> list[SiteOverview]:
    """Every site by name with its computers: "in the site" is assignment's test (R3
    step 2), so loopback and link-local addresses put no computer in any site."""
    rows = await listed(session)
    served = await served_by(session)
    servers = (await session.scalars(select(TaskServer))).all()
    fleet = (await session.scalars(select(Computer))).all()
    by_computer = {ts.computer_id: ts for ts in servers}
    found = [(c, interfaces(c.addresses)) for c in fleet]
    shown = []
    for site in rows:
        nets = networks(site.subnets)
        inside = [c for c, mine in found if within(mine, nets)]
        explicit = {ts.name for ts in servers if site.id in served.get(ts.id, set())}
        local = {by_computer[c.id].name for c in inside if c.id in by_computer}
        computers = [c for c in inside if c.id not in by_computer]
        shown.append(SiteOverview(site, computers, sorted(explicit | local), explicit))
    return shown
