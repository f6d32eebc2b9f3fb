"""Runs: the list with its filters, one run's live per-state counts and per-computer
results, and one computer's whole output."""

from __future__ import annotations

import datetime
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse

from taskfleet.console.run_windows import held
from taskfleet.console.sessions import Viewing
from taskfleet.console.web import PREFIX, SECURITY_HEADERS, render
from taskfleet.errors import InvalidInput, TaskfleetError
from taskfleet.ns import run_queries, runs, tasks
from taskfleet.ns.state import ns_state
from taskfleet.protocol.messages import InstanceState

router = APIRouter(prefix=PREFIX + "/runs", include_in_schema=False)
STATES = [s.value for s in InstanceState]
PAGE = 50
# The "started within" choices of the filter form: label, seconds back from now.
SINCE = {"1h": ("the last hour", 3600), "24h": ("the last day", 86400),
         "7d": ("the last 7 days", 7 * 86400), "30d": ("the last 30 days", 30 * 86400)}  # fmt: skip


def _until(day: str) -> float | None:
    """The end of the day ``day`` (YYYY-MM-DD, UTC) as UNIX seconds."""
    if not day:
        return None
    try:
        date = datetime.date.fromisoformat(day)
    except ValueError:
        raise InvalidInput(f"{day!r} is not a date (YYYY-MM-DD)", field="until") from None
    end = datetime.datetime.combine(date, datetime.time(), datetime.UTC)
    return (end + datetime.timedelta(days=1)).timestamp()


@router.get("")
async def run_list(
    request: Request,
    user: Viewing,
    state: Annotated[list[str], Query(max_length=16)] = [],  # noqa: B006
    task: Annotated[str, Query(max_length=255)] = "",
    target: Annotated[str, Query(max_length=255)] = "",
    since: Annotated[str, Query(max_length=8)] = "",
    until: Annotated[str, Query(max_length=10)] = "",
    before: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> HTMLResponse:
    """Runs, newest first; the filter form updates the list in place (htmx)."""
    states = [s for s in state if s]
    chosen = {"state": states, "task": task, "target": target.strip(),
              "since": since if since in SINCE else "", "until": until}  # fmt: skip
    page = run_queries.RunPage([], None)
    error, error_field = "", ""
    async with ns_state(request).session() as session:
        task_names = await tasks.names(session)
        try:
            filters = run_queries.RunFilter(
                states,
                task or None,
                target.strip() or None,
                time.time() - SINCE[since][1] if since in SINCE else None,
                _until(until),
            )
            page = await run_queries.find_runs(session, filters, PAGE, before)
        except TaskfleetError as exc:
            error, error_field = exc.message, exc.field or ""
    context = {
        "runs": page.runs,
        "next_before": page.next_before,
        "chosen": chosen,
        "states": STATES,
        "tasks": task_names,
        "since_choices": SINCE,
        "error": error,
        "error_field": error_field,
        "filtered": any(chosen.values()),
    }
    fragment = request.headers.get("hx-target") == "run-results"
    return await render(
        request, "_run_rows.html" if fragment else "runs.html", context, page="runs"
    )


async def _summary(request: Request, run_id: int) -> runs.RunSummary:
    async with ns_state(request).session() as session:
        return await runs.summary(session, run_id)


@router.get("/{run_id}")
async def run_page(request: Request, run_id: int, user: Viewing) -> HTMLResponse:
    run = await _summary(request, run_id)
    context = {"run": run, "states": STATES, "held": await held(request, run)}
    return await render(request, "run.html", context, page="runs")


@router.get("/{run_id}/live")
async def run_live(request: Request, run_id: int, user: Viewing) -> HTMLResponse:
    """The part of the run page that updates itself every second or two (htmx)."""
    run = await _summary(request, run_id)
    context = {"run": run, "states": STATES, "held": await held(request, run)}
    return await render(request, "_run_live.html", context)


async def _output(request: Request, run_id: int, computer_id: int) -> run_queries.InstanceOutput:
    # Only this computer's instance is read, whatever the size of the run.
    async with ns_state(request).session() as session:
        return await run_queries.instance_output(session, run_id, str(computer_id))


@router.get("/{run_id}/computers/{computer_id}")
async def run_output(
    request: Request, run_id: int, computer_id: int, user: Viewing
) -> HTMLResponse:
    """One computer's instance: state, return code, times and its whole output."""
    found = await _output(request, run_id, computer_id)
    async with ns_state(request).session() as session:
        run = await runs.summary(session, run_id, with_instances=False)
    context = {"run": run, "instance": found}
    return await render(request, "run_output.html", context, page="runs")


@router.get("/{run_id}/computers/{computer_id}/output.txt")
async def run_output_text(
    request: Request, run_id: int, computer_id: int, user: Viewing
) -> PlainTextResponse:
    """The output alone, as plain text (to save or search in the browser)."""
    found = await _output(request, run_id, computer_id)
    response = PlainTextResponse(found.output)
    response.headers.update(SECURITY_HEADERS)
    return response
