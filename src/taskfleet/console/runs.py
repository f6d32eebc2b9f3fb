"""Runs: the recent ones, and one run's live per-state counts and per-computer results."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from taskfleet.console.sessions import Viewing
from taskfleet.console.web import PREFIX, render
from taskfleet.errors import NotFound
from taskfleet.ns import runs
from taskfleet.ns.state import ns_state
from taskfleet.protocol.messages import InstanceState
from taskfleet.storage.models import Run

router = APIRouter(prefix=PREFIX + "/runs", include_in_schema=False)
STATES = [s.value for s in InstanceState]
RECENT = 100


@router.get("")
async def run_list(request: Request, user: Viewing) -> HTMLResponse:
    async with ns_state(request).session() as session:
        ids = (await session.scalars(select(Run.id).order_by(Run.id.desc()).limit(RECENT))).all()
        recent = [await runs.summary(session, i, with_instances=False) for i in ids]
    return await render(request, "runs.html", {"runs": recent}, page="runs")


async def _summary(request: Request, run_id: int) -> runs.RunSummary:
    async with ns_state(request).session() as session:
        return await runs.summary(session, run_id)


@router.get("/{run_id}")
async def run_page(request: Request, run_id: int, user: Viewing) -> HTMLResponse:
    context = {"run": await _summary(request, run_id), "states": STATES}
    return await render(request, "run.html", context, page="runs")


@router.get("/{run_id}/live")
async def run_live(request: Request, run_id: int, user: Viewing) -> HTMLResponse:
    """The part of the run page that updates itself every second or two (htmx)."""
    context = {"run": await _summary(request, run_id), "states": STATES}
    return await render(request, "_run_live.html", context)


@router.get("/{run_id}/computers/{computer_id}")
async def run_output(
    request: Request, run_id: int, computer_id: int, user: Viewing
) -> HTMLResponse:
    run = await _summary(request, run_id)
    instance = next((i for i in run.instances if i["computer_id"] == computer_id), None)
    if instance is None:
        raise NotFound(f"run {run_id} has no instance on computer {computer_id}")
    context = {"run": run, "instance": instance}
    return await render(request, "run_output.html", context, page="runs")
