"""Admin API for schedules (``/api/schedules``) and collections' maintenance windows."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from taskfleet.errors import InvalidInput
from taskfleet.ns import collections as collections_
from taskfleet.ns import expiry, parameters, schedules
from taskfleet.ns.auth import Administrator, Operator, Viewer
from taskfleet.ns.collection_windows import WindowsView, set_windows, windows_view
from taskfleet.ns.openapi import errors
from taskfleet.ns.state import ns_state
from taskfleet.protocol.fields import (
    MAX_ID,
    Count,
    Finite,
    LongText,
    Name,
    ShortText,
    bounded_list,
)
from taskfleet.storage.models import Schedule

router = APIRouter(prefix="/api", tags=["schedules"])
MAX_TARGETS = 10_000
MAX_PARAMS = 100
ScheduleId = Annotated[int, Path(ge=1, le=MAX_ID, description="the schedule's id")]
CollectionId = Annotated[int, Path(ge=1, le=MAX_ID, description="the collection's id")]


@dataclass
class RequirementsBody:
    """Completion requirements of a run (docs/work-model.md); all optional."""

    min_wait_s: Finite | None = None
    max_wait_s: Finite | None = None
    min_count: Count | None = None
    min_share: Finite | None = None  # above 0, at most 1

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class ScheduleRequest:
    task: Name  # its name or id
    targets: Annotated[list[Name], bounded_list(MAX_TARGETS)]
    exclude: Annotated[list[Name], bounded_list(MAX_TARGETS)] = field(default_factory=list)
    # One of: a moment (ISO 8601; without an offset it is in ``timezone``) or a cron
    # expression, whose times are wall-clock in ``timezone``.
    at: dt.datetime | None = None
    cron: ShortText | None = None
    timezone: ShortText = "UTC"
    params: dict[Name, LongText] = field(default_factory=dict)
    live: bool = False
    ignore_windows: bool = False
    requirements: RequirementsBody = field(default_factory=RequirementsBody)
    # Each run's expiry, counted from its start (ns.expiry); default 7 days.
    expires_in_s: Finite | None = None


@dataclass
class ScheduleView:
    id: int
    task: str
    targets: list[str]
    exclude: list[str]
    params: dict[str, str]
    live: bool
    ignore_windows: bool
    requirements: dict[str, Any]
    options: dict[str, Any]  # further run settings: expires_in_s
    at: float | None
    cron: str | None
    timezone: str
    next_fire_at: float | None
    paused: bool
    fired_count: int
    last_fired_at: float | None
    last_run_id: int | None
    last_error: str | None
    created_at: float
    created_by: str


def view(schedule: Schedule, task: str) -> ScheduleView:
    return ScheduleView(
        schedule.id, task, list(schedule.targets), list(schedule.exclude),
        parameters.shown_given(schedule.params), schedule.live, schedule.ignore_windows,
        dict(schedule.requirements), dict(schedule.options), schedule.at, schedule.cron,
        schedule.timezone,
        schedule.next_fire_at, schedule.paused, schedule.fired_count, schedule.last_fired_at,
        schedule.last_run_id, schedule.last_error, schedule.created_at, schedule.created_by,
    )  # fmt: skip


async def _view(request: Request, schedule_id: int) -> ScheduleView:
    async with ns_state(request).session() as session:
        for schedule, task in await schedules.all_schedules(session):
            if schedule.id == schedule_id:
                return view(schedule, task)
        await schedules.get(session, schedule_id)  # 404
    raise AssertionError  # (not reached)


@router.post("/schedules", status_code=201, response_model=ScheduleView, responses=errors(404, 409))
async def add_schedule(request: Request, body: ScheduleRequest, operator: Operator) -> ScheduleView:
    """A run at a time (``at``) or recurring (``cron`` in ``timezone``). A cron that does
    not parse, an unknown time zone or a time in the past is a 400 naming the field."""
    if len(body.params) > MAX_PARAMS:
        raise InvalidInput(f"at most {MAX_PARAMS} parameter values", field="params")
    options: dict[str, Any] = {}
    if body.expires_in_s is not None:
        expiry.expires_at(0.0, body.expires_in_s)  # checked now, counted from each run's start
        options["expires_in_s"] = body.expires_in_s
    plan = schedules.Plan(
        body.task, body.targets, body.exclude, body.params, body.live, body.ignore_windows,
        body.requirements.as_dict(), options,
    )  # fmt: skip
    state = ns_state(request)
    async with state.session() as session:
        schedule = await schedules.create(
            session, plan, operator.name, body.at, body.cron, body.timezone, box=state.secrets
        )
        schedule_id = schedule.id
    return await _view(request, schedule_id)


@router.get("/schedules", response_model=list[ScheduleView])
async def list_schedules(request: Request, _: Viewer) -> list[ScheduleView]:
    async with ns_state(request).session() as session:
        return [view(s, task) for s, task in await schedules.all_schedules(session)]


@router.get("/schedules/{schedule_id}", response_model=ScheduleView, responses=errors(404))
async def show_schedule(request: Request, schedule_id: ScheduleId, _: Viewer) -> ScheduleView:
    return await _view(request, schedule_id)


@router.post("/schedules/{schedule_id}/pause", response_model=ScheduleView, responses=errors(404))
async def pause_schedule(
    request: Request, schedule_id: ScheduleId, operator: Operator
) -> ScheduleView:
    async with ns_state(request).session() as session:
        await schedules.set_paused(session, schedule_id, True, operator.name)
    return await _view(request, schedule_id)


@router.post("/schedules/{schedule_id}/resume", response_model=ScheduleView, responses=errors(404))
async def resume_schedule(
    request: Request, schedule_id: ScheduleId, operator: Operator
) -> ScheduleView:
    """Resume; a recurring schedule fires next at its first occurrence from now."""
    async with ns_state(request).session() as session:
        await schedules.set_paused(session, schedule_id, False, operator.name)
    return await _view(request, schedule_id)


@router.delete("/schedules/{schedule_id}", status_code=204, responses=errors(404))
async def remove_schedule(request: Request, schedule_id: ScheduleId, operator: Operator) -> None:
    """Remove a schedule; the runs it started stay."""
    async with ns_state(request).session() as session:
        await schedules.remove(session, schedule_id, operator.name)


# --- maintenance windows -------------------------------------------------------------


@dataclass
class WindowsRequest:
    # e.g. "Sat 22:00-Sun 04:00 Europe/Berlin"; none: the collection has no windows.
    windows: Annotated[list[ShortText], bounded_list(50)]


@router.get(
    "/collections/{collection_id}/windows", response_model=WindowsView, responses=errors(404)
)
async def show_windows(request: Request, collection_id: CollectionId, _: Viewer) -> WindowsView:
    async with ns_state(request).session() as session:
        return await windows_view(session, await collections_.by_id(session, collection_id))


@router.put(
    "/collections/{collection_id}/windows", response_model=WindowsView, responses=errors(404)
)
async def put_windows(
    request: Request, collection_id: CollectionId, body: WindowsRequest, admin: Administrator
) -> WindowsView:
    """Set a collection's weekly maintenance windows: its computers get work only while
    one is open, unless a run ignores windows. An empty list removes them."""
    async with ns_state(request).session() as session:
        collection = await collections_.by_id(session, collection_id)
        return await set_windows(session, collection, body.windows, admin.name)
