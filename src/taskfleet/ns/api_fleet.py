"""Admin API for the fleet: task servers, computers, collections, sites, audit (tokens and
identity resets: ns.api_identity)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from sqlalchemy import select

from taskfleet.ns import audit, computer_views, computers, registry, sites
from taskfleet.ns import collections as collections_
from taskfleet.ns.auth import Administrator, Viewer
from taskfleet.ns.state import ns_state
from taskfleet.storage.models import (
    AuditEntry,
    Collection,
    Site,
)

router = APIRouter(prefix="/api", tags=["fleet"])


# --- task servers -----------------------------------------------------------------


@router.get("/taskservers")
async def list_task_servers(request: Request, _: Viewer) -> list[dict[str, Any]]:
    async with ns_state(request).session() as session:
        return [asdict(v) for v in await registry.list_all(session)]


@router.post("/taskservers/{key}/approve")
async def approve(request: Request, key: str, admin: Administrator) -> dict[str, Any]:
    ts = await registry.set_approval(ns_state(request), key, "approved", admin.name)
    return {"name": ts.name, "approval": ts.approval}


@router.post("/taskservers/{key}/revoke")
async def revoke(request: Request, key: str, admin: Administrator) -> dict[str, Any]:
    ts = await registry.set_approval(ns_state(request), key, "revoked", admin.name)
    return {"name": ts.name, "approval": ts.approval}


class TaskServerSettings(BaseModel):
    """A JSON merge patch: a field left out stays as it is; null clears the admin's value,
    so the task server's own (its --client-limit, --heartbeat) applies again."""

    model_config = ConfigDict(extra="forbid")
    client_limit: StrictInt | None = None
    heartbeat_period_s: float | None = Field(default=None, allow_inf_nan=False)


@router.patch("/taskservers/{key:path}")
async def configure(
    request: Request, key: str, body: TaskServerSettings, admin: Administrator
) -> dict[str, Any]:
    """Set or clear a task server's client limit and heartbeat period. The admin's value
    wins over what the task server reports until cleared; audited."""
    changes = body.model_dump(include=body.model_fields_set)
    return await registry.configure(ns_state(request), key, changes, admin.name)


# --- computers --------------------------------------------------------------------


@router.get("/computers")
async def list_computers(
    request: Request,
    user: Viewer,
    search: str = "",
    sort: str = "name",
    descending: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> dict[str, Any]:
    async with ns_state(request).session() as session:
        total, rows = await computer_views.search(
            session, search, sort, descending, limit, offset, identity=user.role == "admin"
        )
        return {"total": total, "computers": rows}


@router.get("/computers/{key}")
async def show_computer(request: Request, key: str, user: Viewer) -> dict[str, Any]:
    """One computer; its hardware id for admins only."""
    async with ns_state(request).session() as session:
        return await computer_views.detail(session, key, identity=user.role == "admin")


# --- collections ------------------------------------------------------------------


@dataclass
class CollectionRequest:
    name: str
    description: str = ""
    rules: dict[str, Any] = field(default_factory=dict)


@dataclass
class MembersRequest:
    computers: list[str]


@router.get("/collections")
async def list_collections(request: Request, _: Viewer) -> list[dict[str, Any]]:
    async with ns_state(request).session() as session:
        counts = await collections_.counts(session)
        rows = (await session.scalars(select(Collection).order_by(Collection.name))).all()
        return [
            {
                "name": c.name,
                "builtin": c.builtin,
                "description": c.description,
                "rules": c.rules,
                "members": counts.get(c.id, 0),
            }
            for c in rows
        ]


@router.post("/collections", status_code=201)
async def create_collection(
    request: Request, body: CollectionRequest, admin: Administrator
) -> dict[str, Any]:
    async with ns_state(request).session() as session:
        collection = await collections_.create(session, body.name, body.description, body.rules)
        audit.record(
            session, admin.name, "collection.create", collection.name, rules=collection.rules
        )
        return {"name": collection.name, "rules": collection.rules}


@router.get("/collections/{name}")
async def show_collection(request: Request, name: str, _: Viewer) -> dict[str, Any]:
    async with ns_state(request).session() as session:
        collection = await collections_.get(session, name)
        members = await collections_.members(session, collection)
        return {
            "name": collection.name,
            "builtin": collection.builtin,
            "description": collection.description,
            "rules": collection.rules,
            "members": [{"id": m.id, "name": m.name} for m in members],
        }


async def _members(
    request: Request, name: str, body: MembersRequest, actor: str, add: bool
) -> dict[str, Any]:
    state = ns_state(request)
    async with state.session() as session:
        collection = await collections_.get(session, name)
        found = [await computers.find(session, key) for key in body.computers]
        await collections_.set_static(session, collection, found, add)
        audit.record(
            session,
            actor,
            "collection.add" if add else "collection.remove",
            name,
            computers=[c.name for c in found],
        )
        changed = {"name": name, "changed": [c.name for c in found]}
    state.agents_changed()  # settings may follow membership; once committed
    return changed


@router.post("/collections/{name}/members")
async def add_members(
    request: Request, name: str, body: MembersRequest, admin: Administrator
) -> dict[str, Any]:
    return await _members(request, name, body, admin.name, add=True)


@router.post("/collections/{name}/members/remove")
async def remove_members(
    request: Request, name: str, body: MembersRequest, admin: Administrator
) -> dict[str, Any]:
    return await _members(request, name, body, admin.name, add=False)


# --- sites ------------------------------------------------------------------------


@dataclass
class SiteRequest:
    name: str
    subnets: list[str] = field(default_factory=list)


@dataclass
class SubnetRequest:
    subnet: str


@dataclass
class SiteServerRequest:
    task_server: str


@router.get("/sites")
async def list_sites(request: Request, _: Viewer) -> list[dict[str, Any]]:
    async with ns_state(request).session() as session:
        served = await sites.served_by(session)
        names = await computer_views.task_server_names(session)
        rows = (await session.scalars(select(Site).order_by(Site.name))).all()
        return [
            {
                "name": s.name,
                "subnets": s.subnets,
                "task_servers": sorted(
                    names[t] for t, ids in served.items() if s.id in ids and t in names
                ),
            }
            for s in rows
        ]


@router.post("/sites", status_code=201)
async def create_site(request: Request, body: SiteRequest, admin: Administrator) -> dict[str, Any]:
    async with ns_state(request).session() as session:
        site = await sites.create(session, body.name, body.subnets)
        audit.record(session, admin.name, "site.create", site.name, subnets=site.subnets)
        return {"name": site.name, "subnets": site.subnets}


@router.post("/sites/{name}/subnets")
async def add_subnet(
    request: Request, name: str, body: SubnetRequest, admin: Administrator
) -> dict[str, Any]:
    async with ns_state(request).session() as session:
        site = await sites.get(session, name)
        await sites.add_subnet(session, site, body.subnet)
        audit.record(session, admin.name, "site.add-subnet", name, subnet=body.subnet)
        return {"name": site.name, "subnets": site.subnets}


@router.post("/sites/{name}/subnets/remove")
async def remove_subnet(
    request: Request, name: str, body: SubnetRequest, admin: Administrator
) -> dict[str, Any]:
    async with ns_state(request).session() as session:
        site = await sites.get(session, name)
        await sites.remove_subnet(session, site, body.subnet)
        audit.record(session, admin.name, "site.remove-subnet", name, subnet=body.subnet)
        return {"name": site.name, "subnets": site.subnets}


@router.post("/sites/{name}/taskservers")
async def add_site_server(
    request: Request, name: str, body: SiteServerRequest, admin: Administrator
) -> dict[str, Any]:
    async with ns_state(request).session() as session:
        site = await sites.get(session, name)
        ts = await registry.find(session, body.task_server)
        await sites.serve(session, site, ts, True)
        audit.record(session, admin.name, "site.add-taskserver", name, task_server=ts.name)
        return {"name": site.name, "task_server": ts.name}


# --- audit ------------------------------------------------------------------------


@router.get("/audit")
async def audit_log(
    request: Request,
    _: Viewer,
    action: str = "",
    actor: str = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    async with ns_state(request).session() as session:
        query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if action:
            query = query.where(AuditEntry.action.startswith(action))
        if actor:
            query = query.where(AuditEntry.actor == actor)
        return [
            {
                "at": e.at,
                "actor": e.actor,
                "action": e.action,
                "target": e.target,
                "detail": e.detail,
            }
            for e in (await session.scalars(query)).all()
        ]
