"""Job definitions: ordered steps of tasks or jobs, checked whole when a job is saved.

A job is stored with its steps as JSON, each step naming what it runs by id
(``{"task": 7}`` or ``{"job": 3}``) so that renaming a task does not break the
jobs that use it, plus its conditions (``protocol.jobs``). Everything that could
go wrong on a computer is refused here instead, with the step and field named:
an unknown task or job, a ``goto`` past the last step, a job that contains itself
at any depth, nesting deeper than ``MAX_DEPTH``.

Jobs and tasks share one namespace: ``taskfleet run NAME`` must mean one thing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import Conflict, InvalidInput, NotFound
from taskfleet.ns import audit
from taskfleet.protocol.jobs import MAX_DEPTH, MAX_STEPS, JobKind, parse_conditions
from taskfleet.storage.models import Job, Task, is_id

MAX_JOB_TIMEOUT_S = 7 * 24 * 3600.0


@dataclass(frozen=True)
class StepView:
    """A step as people read it: names, not ids."""

    number: int
    kind: str  # "task" | "job"
    name: str
    on_success: str
    on_failure: str
    on_code: dict[str, str]


def _check_name(name: str) -> str:
    name = name.strip() if isinstance(name, str) else ""
    if not name or len(name) > 255 or "\x00" in name:
        raise InvalidInput(
            "a job name must be 1 to 255 characters, without NUL (\\u0000)", field="name"
        )
    return name


def _check_kind(kind: str) -> JobKind:
    try:
        return JobKind(kind)
    except ValueError:
        raise InvalidInput(
            f"job kind {kind!r} is not known; use 'client' (each computer runs the steps on "
            "its own) or 'server' (step by step across all targets)",
            field="kind",
        ) from None


def _check_timeout(timeout_s: float) -> float:
    if not (isinstance(timeout_s, int | float) and math.isfinite(timeout_s)) or not (
        1 <= timeout_s <= MAX_JOB_TIMEOUT_S
    ):
        raise InvalidInput(
            f"a job's timeout must be between 1 and {MAX_JOB_TIMEOUT_S:.0f} seconds",
            field="timeout_s",
        )
    return float(timeout_s)


async def _resolve(session: AsyncSession, step: Mapping[str, Any], index: int) -> dict[str, int]:
    """``{"task": NAME_OR_ID}`` or ``{"job": NAME_OR_ID}`` as ``{"task": id}`` / ``{"job": id}``."""
    where, label = f"steps.{index}", f"step {index + 1}"
    kinds = [k for k in ("task", "job") if k in step]
    if len(kinds) != 1:
        raise InvalidInput(f"{label} must name exactly one 'task' or one 'job'", field=where)
    kind = kinds[0]
    key = str(step[kind]).strip()
    model: type[Task] | type[Job] = Task if kind == "task" else Job
    query = select(model.id).where(model.name == key)
    if is_id(key):
        query = select(model.id).where(or_(model.id == int(key), model.name == key))
    found = await session.scalar(query.limit(1))
    if found is None:
        raise InvalidInput(
            f"{label}: no {kind} {key!r}; 'taskfleet {kind} list' shows them",
            field=f"{where}.{kind}",
        )
    return {kind: found}


async def check_steps(
    session: AsyncSession, steps: object, job_id: int | None = None
) -> list[dict[str, Any]]:
    """The steps as stored, or InvalidInput naming ``steps.N.FIELD`` (N from 0)."""
    if not isinstance(steps, Sequence) or isinstance(steps, str) or not steps:
        raise InvalidInput("a job needs at least one step", field="steps")
    if len(steps) > MAX_STEPS:
        raise InvalidInput(f"a job has at most {MAX_STEPS} steps", field="steps")
    stored: list[dict[str, Any]] = []
    for index, step in enumerate(steps):
        if not isinstance(step, Mapping):
            raise InvalidInput(
                f"step {index + 1} must be an object with 'task' or 'job'", field=f"steps.{index}"
            )
        ref = await _resolve(session, step, index)
        conditions = parse_conditions(step, len(steps), index)
        stored.append({**ref, **conditions.as_json()})
    nested: list[int] = [s["job"] for s in stored if "job" in s]
    if nested:
        await _check_nesting(session, nested, job_id)
    return stored


async def _check_nesting(session: AsyncSession, nested: list[int], job_id: int | None) -> None:
    """Refuse a job that contains itself, or nests deeper than ``MAX_DEPTH``.

    Walks the stored jobs breadth first from the ones this job names; ``job_id`` is
    the job being edited (None for a new one, which nothing can contain yet).
    """
    frontier, depth = set(nested), 1
    while frontier:
        if job_id is not None and job_id in frontier:
            raise InvalidInput(
                "this job would contain itself (through the jobs its steps run); "
                "a job cannot run itself",
                field="steps",
            )
        depth += 1
        if depth > MAX_DEPTH:
            raise InvalidInput(
                f"jobs nest at most {MAX_DEPTH} deep (a job in a job in a job...)",
                field="steps",
            )
        rows = await session.scalars(select(Job.steps).where(Job.id.in_(frontier)))
        frontier = {s["job"] for steps in rows.all() for s in steps if "job" in s}


async def _name_free(session: AsyncSession, name: str, job_id: int | None) -> None:
    taken = await session.scalar(select(Job.id).where(Job.name == name))
    if taken is not None and taken != job_id:
        raise Conflict(f"a job named {name!r} already exists", field="name")
    if await session.scalar(select(Task.id).where(Task.name == name)) is not None:
        raise Conflict(
            f"a task is named {name!r}; jobs and tasks share names, so 'taskfleet run "
            f"{name}' means one thing. Choose another name",
            field="name",
        )


async def create(
    session: AsyncSession,
    name: str,
    kind: str,
    steps: object,
    timeout_s: float,
    actor: str,
) -> Job:
    name = _check_name(name)
    job_kind = _check_kind(kind)
    timeout = _check_timeout(timeout_s)
    await _name_free(session, name, None)
    stored = await check_steps(session, steps)
    job = Job(
        name=name,
        kind=job_kind.value,
        steps=stored,
        timeout_s=timeout,
        created_at=time.time(),
        created_by=actor,
    )
    session.add(job)
    await session.flush()
    audit.record(session, actor, "job.create", name, kind=job_kind.value, steps=len(stored))
    return job


async def update(
    session: AsyncSession,
    job: Job,
    name: str,
    kind: str,
    steps: object,
    timeout_s: float,
    actor: str,
) -> Job:
    """Edit a job; runs already started keep the steps they were given."""
    name = _check_name(name)
    job_kind = _check_kind(kind)
    timeout = _check_timeout(timeout_s)
    await _name_free(session, name, job.id)
    stored = await check_steps(session, steps, job.id)
    job.name, job.kind, job.steps, job.timeout_s = name, job_kind.value, stored, timeout
    audit.record(session, actor, "job.edit", name, kind=job_kind.value, steps=len(stored))
    return job


async def find(session: AsyncSession, key: str) -> Job:
    query = select(Job).where(Job.name == key)
    if is_id(key):
        query = select(Job).where(or_(Job.id == int(key), Job.name == key))
    job = await session.scalar(query.limit(1))
    if job is None:
        raise NotFound(f"no job {key!r}; 'taskfleet job list' shows them")
    return job


async def step_views(session: AsyncSession, job: Job) -> list[StepView]:
    """The job's steps with the names of what they run (one query per kind)."""
    task_ids = {s["task"] for s in job.steps if "task" in s}
    job_ids = {s["job"] for s in job.steps if "job" in s}
    names: dict[str, dict[int, str]] = {"task": {}, "job": {}}
    for kind, model, ids in (("task", Task, task_ids), ("job", Job, job_ids)):
        if ids:
            rows = await session.execute(select(model.id, model.name).where(model.id.in_(ids)))
            names[kind] = {row.id: row.name for row in rows}
    views = []
    for n, step in enumerate(job.steps, start=1):
        kind = "task" if "task" in step else "job"
        views.append(
            StepView(
                number=n,
                kind=kind,
                name=names[kind].get(step[kind], f"#{step[kind]} (deleted)"),
                on_success=step.get("on_success", "continue"),
                on_failure=step.get("on_failure", "stop-failed"),
                on_code=dict(step.get("on_code") or {}),
            )
        )
    return views


async def listed(session: AsyncSession) -> list[Job]:
    """Every job by name."""
    return list((await session.scalars(select(Job).order_by(Job.name))).all())


async def names(session: AsyncSession) -> list[str]:
    return list((await session.scalars(select(Job.name).order_by(Job.name))).all())
