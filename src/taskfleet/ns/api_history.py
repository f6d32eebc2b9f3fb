"""Admin API for run history: the run list with its filters, and one computer's output.

``GET /api/runs?state=Failed&task=X&target=Y&since=T&until=T&limit=50&before=ID``: runs,
newest first, a page at a time. ``GET /api/runs/{run_id}/output/{computer}``: its
state, return code, times and whole output (``?format=text``: the output alone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse

from taskfleet.ns import run_queries
from taskfleet.ns.auth import Viewer
from taskfleet.ns.openapi import errors
from taskfleet.ns.runs import RunSummary
from taskfleet.ns.state import ns_state
from taskfleet.protocol.fields import LATEST_TIME, MAX_ID

router = APIRouter(prefix="/api", tags=["history"])
Moment = Annotated[
    float | None, Query(ge=0, le=LATEST_TIME, allow_inf_nan=False, description="UNIX seconds")
]


@dataclass
class RunPage:
    runs: list[RunSummary]
    # The next (older) page: pass it as ``before``. None on the last page.
    next_before: int | None


@router.get("/runs", responses=errors(404, 409))
async def list_runs(
    request: Request,
    _: Viewer,
    state: Annotated[
        list[str] | None,
        Query(max_length=16, description="runs with an instance in this state; repeatable"),
    ] = None,
    task: Annotated[str | None, Query(min_length=1, max_length=255, description="name or id")] = (
        None
    ),
    target: Annotated[
        str | None, Query(min_length=1, max_length=255, description="collection or computer")
    ] = None,
    since: Moment = None,
    until: Moment = None,
    limit: Annotated[int, Query(ge=1, le=run_queries.MAX_PAGE)] = 50,
    before: Annotated[int | None, Query(ge=1, le=MAX_ID, description="next_before")] = None,
) -> RunPage:
    """Runs, newest first, a page at a time; every filter optional, all of them combined."""
    filters = run_queries.RunFilter(state or [], task, target, since, until)
    async with ns_state(request).session() as session:
        page = await run_queries.find_runs(session, filters, limit, before)
    return RunPage(page.runs, page.next_before)


@router.get(
    "/runs/{run_id}/output/{computer}",
    response_model=run_queries.InstanceOutput,
    responses={
        **errors(404, 409),
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
    },
)
async def run_output(
    request: Request,
    run_id: int,
    computer: str,
    _: Viewer,
    format: Annotated[Literal["json", "text"], Query(description="text: the output alone")] = (
        "json"
    ),
) -> Any:
    """One computer's instance of a run: state, return code, times and its whole output
    (up to the output limit, with the truncation marker where it was cut)."""
    async with ns_state(request).session() as session:
        found = await run_queries.instance_output(session, run_id, computer)
    if format == "text":
        return PlainTextResponse(found.output)
    return found
