"""The dashboard: the fleet at a glance, task servers, and runs in progress (live)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from taskfleet.console.sessions import Viewing
from taskfleet.console.web import PREFIX, render
from taskfleet.ns import advice, drafts, registry, run_queries, runs
from taskfleet.ns.collections import load_membership
from taskfleet.ns.state import ns_state
from taskfleet.protocol.messages import Approval
from taskfleet.storage.models import Computer

router = APIRouter(prefix=PREFIX, include_in_schema=False)
# A computer counts as seen when it made contact within twice its Task Request
# Interval (one interval, plus jitter and a missed poll) and a minute's grace.
SEEN_INTERVALS = 2
SEEN_GRACE_S = 60.0


@dataclass
class Fleet:
    total: int = 0
    seen: int = 0
    never: int = 0
    not_seen: list[Computer] = field(default_factory=list)


async def fleet_health(request: Request) -> Fleet:
    async with ns_state(request).session() as session:
        computers = list(await session.scalars(select(Computer)))
        membership = await load_membership(session)  # the whole fleet: no id list
        config = (await drafts.applied(session)).agent_config
    now, fleet = time.time(), Fleet(total=len(computers))
    for computer in computers:
        if computer.id in membership.task_servers:
            fleet.total -= 1  # task servers report through heartbeats, shown below
            continue
        interval = config.settings_for(membership, computer).task_request_interval_s
        if computer.last_contact is None:
            fleet.never += 1
        elif now - computer.last_contact <= SEEN_INTERVALS * interval + SEEN_GRACE_S:
            fleet.seen += 1
        else:
            fleet.not_seen.append(computer)
    return fleet


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
