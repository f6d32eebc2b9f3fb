"""The dashboard: the fleet at a glance, task servers, and runs in progress (live)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from taskfleet.console.sessions import Viewing
from taskfleet.console.web import PREFIX, render
from taskfleet.ns import advice, drafts, registry, run_queries, runs
from taskfleet.ns.fleet_health import Fleet, of_fleet
from taskfleet.ns.state import ns_state
from taskfleet.protocol.messages import Approval

router = APIRouter(prefix=PREFIX, include_in_schema=False)


async def fleet_health(request: Request) -> Fleet:
    async with ns_state(request).session() as session:
        config = (await drafts.applied(session)).agent_config
        return await of_fleet(session, config)


async def runs_in_progress(request: Request, limit: int = 20) -> list[runs.RunSummary]:
    async with ns_state(request).session() as session:
        return await run_queries.in_progress(session, limit)


@router.get("/")
async def dashboard(request: Request, user: Viewing) -> HTMLResponse:
    state = ns_state(request)
    async with state.session() as session:
        servers = await registry.list_all(session)
        scale = await advice.fleet_advice(session, state.settings.ts_capacity_rps)
    context: dict[str, Any] = {
        "scale_warnings": [a for a in scale if a.warnings],
        "fleet": await fleet_health(request),
        "servers": servers,
        "pending": [s for s in servers if s.approval == Approval.PENDING],
        "in_progress": await runs_in_progress(request),
    }
    return await render(request, "dashboard.html", context, page="dashboard")


@router.get("/fragments/runs-in-progress")
async def in_progress_fragment(request: Request, user: Viewing) -> HTMLResponse:
    context = {"in_progress": await runs_in_progress(request)}
    return await render(request, "_runs_in_progress.html", context)
