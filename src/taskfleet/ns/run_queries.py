"""Run history: runs found by state, task, target and time, and one computer's output.

``run-list`` filters (every one optional, all of them together):

- ``states``: runs with at least one instance in one of these states
  (``--state Failed``: the runs where something failed);
- ``task``: the runs of one task (name or id);
- ``target``: runs given that collection or computer as a target (``run_target``), and
  for a computer also runs that reached it through a collection (its instances);
- ``since`` / ``until``: created in ``[since, until)``, UNIX seconds.

Newest first, a page at a time by keyset (``before``: the smallest id of the page
before), so page 50 costs what page 1 does. Each filter is an indexed lookup
(migration 0012): ``ix_instance_state_run``, ``ix_run_task_created``,
``ix_run_target_name``, ``ix_instance_computer_state``, ``ix_run_created_at``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import InvalidInput, NotFound
from taskfleet.ns import computers, instance_steps, jobs, runs, tasks
from taskfleet.protocol.fields import TRUNCATION_MARKER
from taskfleet.protocol.messages import InstanceState
from taskfleet.storage.models import MAX_ID, Collection, Computer, Instance, Run, RunTarget

MAX_PAGE = 500
_MARKER_HEAD = TRUNCATION_MARKER.split("{", 1)[0]
TERMINAL = [s.value for s in InstanceState if s.terminal]


@dataclass
class RunFilter:
    states: list[str] = field(default_factory=list)
    task: str | None = None
    target: str | None = None
    since: float | None = None
    until: float | None = None


@dataclass
class RunPage:
    runs: list[runs.RunSummary]
    # Pass as ``before`` for the next (older) page; None when this is the last one.
    next_before: int | None


def check_states(states: list[str]) -> list[str]:
    known = [s.value for s in InstanceState]
    for state in states:
        if state not in known:
            raise InvalidInput(
                f"no state {state!r}; the states are {', '.join(known)}", field="state"
            )
    return list(dict.fromkeys(states))


async def _target_clause(session: AsyncSession, target: str) -> Any:
    name = target.removeprefix("collection:")
    spelled = {target, name, f"collection:{name}"}  # as it was typed, either way
    given = select(RunTarget.run_id).where(RunTarget.name.in_(spelled))
    clauses = [Run.id.in_(given)]
    try:
        computer: Computer | None = await computers.find(session, target)
    except NotFound:
        computer = None
    if computer is not None:
        clauses.append(
            Run.id.in_(select(RunTarget.run_id).where(RunTarget.name == f"computer:{computer.id}"))
        )
        reached = select(Instance.run_id).where(Instance.computer_id == computer.id)
        clauses.append(Run.id.in_(reached))
    else:
        collection = await session.scalar(select(Collection.id).where(Collection.name == name))
        recorded = await session.scalar(given.limit(1))
        if collection is None and recorded is None:
            raise NotFound(
                f"no collection or computer named {target!r} (and no run was given it)",
                field="target",
            )
    return or_(*clauses)


async def find_runs(
    session: AsyncSession, filters: RunFilter, limit: int = 50, before: int | None = None
) -> RunPage:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit is 1 to {MAX_PAGE}", field="limit")
    query = select(Run.id)
    states = check_states(filters.states)
    if states:
        having = select(Instance.run_id).where(Instance.state.in_(states))
        query = query.where(Run.id.in_(having))
    if filters.task is not None:  # a task or a job: they share names (ns.jobs)
        try:
            task = await tasks.find(session, filters.task)
            query = query.where(Run.task_id == task.id)
        except NotFound:
            try:
                job = await jobs.find(session, filters.task)
            except NotFound:
                raise NotFound(
                    f"no task or job {filters.task!r}; 'taskfleet task list' and "
                    "'taskfleet job list' show them",
                    field="task",
                ) from None
            query = query.where(Run.job_id == job.id)
    if filters.target is not None:
        query = query.where(await _target_clause(session, filters.target))
    if filters.since is not None:
        query = query.where(Run.created_at >= filters.since)
    if filters.until is not None:
        query = query.where(Run.created_at < filters.until)
    if before is not None:
        query = query.where(Run.id < min(before, MAX_ID))
    ids = list((await session.scalars(query.order_by(Run.id.desc()).limit(limit + 1))).all())
    page = ids[:limit]
    found = [await runs.summary(session, i, with_instances=False) for i in page]
    return RunPage(found, page[-1] if len(ids) > limit else None)


@dataclass
class InstanceOutput:
    run_id: int
    task: str
    computer_id: int
    computer: str
    state: str
    return_code: int | None
    received_at: float | None
    started_at: float | None
    finished_at: float | None
    truncated: bool  # the output ends with taskfleet's truncation marker
    output: str
    # A client job's steps as its agent reported them (ns.instance_steps); else empty.
    steps: list[instance_steps.StepResult] = field(default_factory=list)


async def instance_output(session: AsyncSession, run_id: int, computer_key: str) -> InstanceOutput:
    """One computer's instance of a run, with its whole stored output."""
    summary = await runs.summary(session, run_id, with_instances=False)  # 404 if no run
    computer = await computers.find(session, computer_key)
    instance = await session.scalar(
        select(Instance).where(Instance.run_id == run_id, Instance.computer_id == computer.id)
    )
    if instance is None:
        raise NotFound(
            f"run {run_id} did not target {computer.name!r}; "
            f"'taskfleet run-status {run_id}' lists its computers"
        )
    output = instance.output or ""
    return InstanceOutput(
        run_id=run_id,
        task=summary.task,
        computer_id=computer.id,
        computer=computer.name,
        state=instance.state,
        return_code=instance.return_code,
        received_at=instance.received_at,
        started_at=instance.started_at,
        finished_at=instance.finished_at,
        truncated=_MARKER_HEAD in output[-200:],
        output=output,
        steps=await instance_steps.of_instance(session, instance.id),
    )


async def in_progress(session: AsyncSession, limit: int = 20) -> list[runs.RunSummary]:
    """The newest runs with an instance not yet in a terminal state (the dashboard's)."""
    unfinished = (
        select(Instance.id)
        .where(Instance.run_id == Run.id, Instance.state.not_in(TERMINAL))
        .exists()
    )
    ids = await session.scalars(
        select(Run.id).where(unfinished).order_by(Run.id.desc()).limit(limit)
    )
    return [await runs.summary(session, i, with_instances=False) for i in ids]
