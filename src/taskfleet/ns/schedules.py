"""Schedules: a run started at a time, or on a cron expression in a time zone.

A schedule keeps what ``runs.start_run`` needs (task, targets, exclusions, parameter
values, live or buffered, windows, completion requirements, further options such
as the expiry) and ``next_fire_at``, its next occurrence. ``fire_due`` runs on
every NS replica every ``FIRE_EVERY_S``: it claims one due schedule at a time
with ``SELECT ... FOR UPDATE SKIP LOCKED`` and, in that same transaction, starts
the run and moves ``next_fire_at`` past now. Another replica either skips the
locked row or, once it committed, no longer finds it due, so each occurrence
fires once; the unique (schedule_id, scheduled_for) of ``run`` refuses a second
run for one occurrence even so. Occurrences missed while no NS was running are
coalesced: the first round after a start fires once, for the latest missed
occurrence, and the run and the audit log say how many it stands for
(docs/work-model.md, "Schedules").
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

from croniter import croniter
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import InvalidInput, NotFound, TaskfleetError
from taskfleet.ns import audit, parameters, runs
from taskfleet.ns.completion import Requirements
from taskfleet.ns.secrets import SecretBox
from taskfleet.ns.state import NSState
from taskfleet.ns.windows import zone
from taskfleet.storage.models import MAX_ID, Job, Schedule, Task

log = logging.getLogger("taskfleet.ns.schedules")
FIRE_EVERY_S = 2.0
MAX_COALESCED = 100_000  # occurrences counted one by one; beyond, the count says "at least"


def next_after(cron: str, timezone: str, after: float) -> float:
    """The first occurrence of ``cron`` (wall clock in ``timezone``) after ``after``."""
    start = dt.datetime.fromtimestamp(after, zone(timezone))
    found: float = croniter(cron, start).get_next(float)
    return found


def check_cron(cron: str, timezone: str, now: float) -> float:
    """The next occurrence; a 400 naming ``cron`` for one that does not parse or never comes."""
    if not isinstance(cron, str) or not cron.strip() or len(cron) > 255:
        raise InvalidInput("cron: give a cron expression such as '0 3 * * *'", field="cron")
    zone(timezone)
    if not croniter.is_valid(cron):
        raise InvalidInput(
            f"cron {cron!r} does not parse; five fields: minute hour day-of-month month "
            "day-of-week (and an optional sixth, seconds), e.g. '0 3 * * *' for 03:00 daily",
            field="cron",
        )
    try:
        return next_after(cron, timezone, now)
    except Exception:  # croniter raises its own errors for dates that never come
        raise InvalidInput(f"cron {cron!r} never occurs", field="cron") from None


def check_at(at: dt.datetime | float, timezone: str, now: float) -> float:
    """A moment as UNIX seconds (a time without a zone is in ``timezone``); not past."""
    if isinstance(at, dt.datetime):
        if at.tzinfo is None:
            at = at.replace(tzinfo=zone(timezone))
        when = at.timestamp()
    else:
        when = float(at)
    if when != when or when <= now:
        stamp = dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="seconds")
        raise InvalidInput(f"at is in the past (it is {stamp} now); give a later time", field="at")
    return when


@dataclass
class Plan:
    """What a schedule starts: everything a run takes besides its timing."""

    task: str
    targets: list[str]
    exclude: list[str]
    params: dict[str, str]
    live: bool
    ignore_windows: bool
    requirements: dict[str, Any]
    options: dict[str, Any]


def first_fire_text(schedule: Schedule) -> str:
    """When a schedule runs next, on its own time zone's clock ("" when never again)."""
    if schedule.next_fire_at is None:
        return ""
    when = dt.datetime.fromtimestamp(schedule.next_fire_at, zone(schedule.timezone))
    return f"{when:%Y-%m-%d %H:%M} {schedule.timezone}"


async def create(
    session: AsyncSession,
    plan: Plan,
    actor: str,
    at: dt.datetime | float | None = None,
    cron: str | None = None,
    timezone: str = "UTC",
    *,
    box: SecretBox | None = None,  # seals secret parameter values (ns.parameters)
) -> Schedule:
    now = time.time()
    zone(timezone)
    if (at is None) == (cron is None):
        raise InvalidInput("give exactly one of at (a time) or cron (recurring)", field="at")
    first = check_at(at, timezone, now) if at is not None else check_cron(str(cron), timezone, now)
    if not plan.targets:
        raise InvalidInput("give at least one target (a collection or a computer)", field="targets")
    requirements = Requirements.parse(plan.requirements).to_json()
    task, job, made = await runs.task_or_job(session, plan.task)  # they share names
    if made is None:
        assert task is not None
        params = parameters.for_schedule(task.type, task.params, plan.params, box)
    else:
        params = parameters.for_schedule_declared(made.declared, plan.params, box)
    # The targets must name something now; which computers they hold is decided at each run.
    await runs.resolve_targets(session, plan.targets)
    schedule = Schedule(
        task_id=task.id if task else None,
        job_id=job.id if job else None,
        targets=plan.targets,
        exclude=plan.exclude,
        params=params,
        live=plan.live,
        ignore_windows=plan.ignore_windows,
        requirements=requirements,
        options=plan.options,
        at=first if at is not None else None,
        cron=cron,
        timezone=timezone,
        next_fire_at=first,
        paused=False,
        fired_count=0,
        created_at=now,
        created_by=actor,
    )
    session.add(schedule)
    await session.flush()
    audit.record(
        session, actor, "schedule.add", task.name if task else job.name if job else "",
        schedule=schedule.id, at=schedule.at,
        cron=cron, timezone=timezone, targets=plan.targets, exclude=plan.exclude,
    )  # fmt: skip
    return schedule


async def get(session: AsyncSession, schedule_id: int) -> Schedule:
    found = await session.get(Schedule, schedule_id) if 0 < schedule_id <= MAX_ID else None
    if found is None:
        raise NotFound(f"no schedule {schedule_id}; 'taskfleet schedule list' shows them")
    return found


async def all_schedules(session: AsyncSession) -> list[tuple[Schedule, str]]:
    rows = await session.execute(
        select(Schedule, func.coalesce(Task.name, Job.name, "(a removed job)"))
        .outerjoin(Task, Task.id == Schedule.task_id)
        .outerjoin(Job, Job.id == Schedule.job_id)
        .order_by(Schedule.id)
    )
    return [(s, name) for s, name in rows.all()]


async def set_paused(session: AsyncSession, schedule_id: int, paused: bool, actor: str) -> Schedule:
    """Pause or resume. Resuming a recurring schedule starts again from now: the
    occurrences while it was paused are not fired."""
    schedule = await get(session, schedule_id)
    if schedule.paused != paused:
        schedule.paused = paused
        if not paused and schedule.cron is not None:
            schedule.next_fire_at = next_after(schedule.cron, schedule.timezone, time.time())
        action = "schedule.pause" if paused else "schedule.resume"
        audit.record(session, actor, action, str(schedule.id))
    return schedule


async def remove(session: AsyncSession, schedule_id: int, actor: str) -> None:
    schedule = await get(session, schedule_id)
    await session.delete(schedule)
    audit.record(session, actor, "schedule.remove", str(schedule_id))


def occurrence(schedule: Schedule, now: float) -> tuple[float, int, float | None]:
    """For a due schedule: (the occurrence to fire, how many earlier missed occurrences
    it stands for, the next occurrence after now or None)."""
    due = schedule.next_fire_at
    assert due is not None
    if schedule.cron is None:
        return due, 0, None
    missed = 0
    following = next_after(schedule.cron, schedule.timezone, due)
    while following <= now and missed < MAX_COALESCED:
        due, missed = following, missed + 1
        following = next_after(schedule.cron, schedule.timezone, due)
    if following <= now:  # more than MAX_COALESCED missed: jump to now
        following = next_after(schedule.cron, schedule.timezone, now)
    return due, missed, following


async def _claim(session: AsyncSession, now: float) -> Schedule | None:
    query = (
        select(Schedule)
        .where(Schedule.next_fire_at <= now, Schedule.paused.is_(False))
        .order_by(Schedule.next_fire_at)
        .limit(1)
    )
    if session.get_bind().dialect.name == "postgresql":
        # A row another replica is firing is skipped, not waited for; once that one
        # commits, its next_fire_at is past now and it is not due here either.
        query = query.with_for_update(skip_locked=True)
    found: Schedule | None = await session.scalar(query)
    return found


async def _what_runs(session: AsyncSession, schedule: Schedule) -> str:
    """How ``runs.start_run`` finds the schedule's task (by id) or job (by name, as tasks
    and jobs share names, and a task's id could equal the job's)."""
    if schedule.job_id is None:
        return str(schedule.task_id)
    job = await session.get(Job, schedule.job_id)
    if job is None:
        raise NotFound(f"schedule {schedule.id}'s job was removed")
    return job.name


async def _fire(state: NSState, session: AsyncSession, schedule: Schedule, now: float) -> None:
    scheduled_for, coalesced, following = occurrence(schedule, now)
    actor = f"{schedule.created_by} (schedule {schedule.id})"
    run_id: int | None = None
    error: str | None = None
    try:
        async with session.begin_nested():  # a run that cannot start still moves the schedule on
            run = await runs.start_run(
                state, session, await _what_runs(session, schedule), list(schedule.targets),
                schedule.live,
                actor, exclude=list(schedule.exclude), ignore_windows=schedule.ignore_windows,
                requirements=dict(schedule.requirements),
                origin=(schedule.id, scheduled_for, coalesced),
                params=dict(schedule.params) or None,
                **dict(schedule.options),  # e.g. the run's expiry
            )  # fmt: skip
            run_id = run.id
    except TaskfleetError as exc:
        error = exc.message
    except IntegrityError:  # this occurrence has its run already
        error = "this occurrence had already fired"
    except DBAPIError:
        raise  # the database failed (locked, gone): all rolls back, the next round retries
    except Exception as exc:  # never fire the same occurrence again and again
        log.exception("schedule %s: starting its run failed", schedule.id)
        error = f"starting the run failed: {exc.__class__.__name__}"
    schedule.next_fire_at = following
    schedule.last_fired_at = now
    schedule.fired_count += 1
    schedule.last_error = error
    if run_id is not None:
        schedule.last_run_id = run_id
    audit.record(
        session, "ns", "schedule.fire" if error is None else "schedule.failed", str(schedule.id),
        run=run_id, scheduled_for=scheduled_for, late_s=round(now - scheduled_for, 3),
        coalesced=coalesced, error=error,
    )  # fmt: skip
    if error is not None:
        log.warning("schedule %s could not start its run: %s", schedule.id, error)


async def fire_due(state: NSState, now: float | None = None) -> int:
    """Fire every due schedule, each in its own transaction; returns how many fired."""
    fired = 0
    while True:
        moment = time.time() if now is None else now
        async with state.session() as session:
            schedule = await _claim(session, moment)
            if schedule is None:
                return fired
            await _fire(state, session, schedule, moment)
        fired += 1


async def fire_forever(state: NSState, every_s: float = FIRE_EVERY_S) -> None:
    """On every replica: the row locks, not a duty lock, make each occurrence fire once."""
    while True:
        try:
            await fire_due(state)
        except Exception:
            log.exception("could not fire due schedules; trying again in %g s", every_s)
        await asyncio.sleep(every_s)
