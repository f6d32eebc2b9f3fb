"""Admin API for the fleet: task servers, computers, audit (collections: ns.api_collections,
sites: ns.api_sites; tokens and identity resets: ns.api_identity)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from taskfleet.ns import audit_queries, computer_views, registry
from taskfleet.ns.auth import Administrator, Viewer
from taskfleet.ns.fleet_replies import (
    AuditRow,
    ComputerDetail,
    ComputerPage,
    ConfiguredTaskServer,
    TaskServerApproval,
)
from taskfleet.ns.openapi import errors
from taskfleet.ns.state import ns_state
from taskfleet.ns.users import Role
from taskfleet.protocol.fields import ShortText
from taskfleet.protocol.messages import Approval

router = APIRouter(prefix="/api", tags=["fleet"])


# --- task servers -----------------------------------------------------------------


@router.get("/taskservers")
async def list_task_servers(request: Request, _: Viewer) -> list[registry.TaskServerView]:
    async with ns_state(request).session() as session:
        return await registry.list_all(session)


@router.post("/taskservers/{key:path}/approve")
async def approve(request: Request, key: str, admin: Administrator) -> TaskServerApproval:
    ts = await registry.set_approval(ns_state(request), key, Approval.APPROVED, admin.name)
    return TaskServerApproval(ts.name, ts.approval)


@router.post("/taskservers/{key:path}/revoke")
async def revoke(request: Request, key: str, admin: Administrator) -> TaskServerApproval:
    ts = await registry.set_approval(ns_state(request), key, Approval.REVOKED, admin.name)
    return TaskServerApproval(ts.name, ts.approval)


class TaskServerSettings(BaseModel):
    """A JSON merge patch: a field left out stays as it is; null clears the admin's value,
    so the task server's own (its --client-limit, --heartbeat) applies again."""

    model_config = ConfigDict(extra="forbid")
    client_limit: StrictInt | None = None
    heartbeat_period_s: float | None = Field(default=None, allow_inf_nan=False)


@router.patch("/taskservers/{key:path}")
async def configure(
    request: Request, key: str, body: TaskServerSettings, admin: Administrator
) -> ConfiguredTaskServer:
    """Set or clear a task server's client limit and heartbeat period. The admin's value
    wins over what the task server reports until cleared; audited."""
    changes = body.model_dump(include=body.model_fields_set)
    return ConfiguredTaskServer(
        **await registry.configure(ns_state(request), key, changes, admin.name)
    )


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
) -> ComputerPage:
    async with ns_state(request).session() as session:
        total, rows = await computer_views.search(
            session, search, sort, descending, limit, offset, identity=user.role == Role.ADMIN
        )
        return ComputerPage(total, rows)


@router.get("/computers/{key:path}", responses=errors(409))
async def show_computer(request: Request, key: str, user: Viewer) -> ComputerDetail:
    """One computer; its hardware id for admins only."""
    async with ns_state(request).session() as session:
        return await computer_views.detail(session, key, identity=user.role == Role.ADMIN)


# --- audit ------------------------------------------------------------------------


@router.get("/audit")
async def audit_log(
    request: Request,
    _: Viewer,
    action: ShortText = "",
    actor: ShortText = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditRow]:
    async with ns_state(request).session() as session:
        return await audit_queries.entries(session, actor=actor, action=action, limit=limit)
