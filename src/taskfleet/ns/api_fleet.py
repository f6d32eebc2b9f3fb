"""Admin API for the fleet: task servers, computers, audit (collections: ns.api_collections,
sites: ns.api_sites; tokens and identity resets: ns.api_identity)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from sqlalchemy import select

from taskfleet.ns import computer_views, registry
from taskfleet.ns.auth import Administrator, Viewer
from taskfleet.ns.openapi import errors
from taskfleet.ns.state import ns_state
from taskfleet.protocol.fields import ShortText
from taskfleet.storage.models import (
    AuditEntry,
)

router = APIRouter(prefix="/api", tags=["fleet"])


# --- task servers -----------------------------------------------------------------


@router.get("/taskservers")
async def list_task_servers(request: Request, _: Viewer) -> list[dict[str, Any]]:
    async with ns_state(request).session() as session:
        return [asdict(v) for v in await registry.list_all(session)]


@router.post("/taskservers/{key:path}/approve")
async def approve(request: Request, key: str, admin: Administrator) -> dict[str, Any]:
    ts = await registry.set_approval(ns_state(request), key, "approved", admin.name)
    return {"name": ts.name, "approval": ts.approval}


@router.post("/taskservers/{key:path}/revoke")
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
    search: ShortText = "",
    sort: ShortText = "name",
    descending: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> dict[str, Any]:
    async with ns_state(request).session() as session:
        total, rows = await computer_views.search(
            session, search, sort, descending, limit, offset, identity=user.role == "admin"
        )
        return {"total": total, "computers": rows}


@router.get("/computers/{key:path}", responses=errors(409))
async def show_computer(request: Request, key: str, user: Viewer) -> dict[str, Any]:
    """One computer; its hardware id for admins only."""
    async with ns_state(request).session() as session:
        return await computer_views.detail(session, key, identity=user.role == "admin")


# --- audit ------------------------------------------------------------------------


@router.get("/audit")
async def audit_log(
    request: Request,
    _: Viewer,
    action: ShortText = "",
    actor: ShortText = "",
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
