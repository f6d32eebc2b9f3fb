"""Runs and instances: fan out, deliver, and summarise (SPEC section 2)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import InvalidInput, NotFound
from taskfleet.ns import (
    audit,
    completion,
    computers,
    expiry,
    job_plans,
    jobs,
    parameters,
    run_rows,
    server_jobs,
    tasks,
    window_hold,
)
from taskfleet.ns import collections as collections_
from taskfleet.ns import targets as targets_
from taskfleet.ns.run_replies import InstanceRow, StepRun
from taskfleet.ns.secrets import SecretBox
from taskfleet.ns.state import NSState
from taskfleet.protocol.jobs import JobKind
from taskfleet.protocol.messages import InstanceState, RunTask, WorkBatch, WorkItem, WorkRef
from taskfleet.storage.models import (
    MAX_ID,
    Collection,
    Computer,
    Instance,
    Job,
    Run,
    Task,
)


async def resolve_targets(session: AsyncSession, targets: list[str]) -> list[collections_.Member]:
    """Collections and computers, by name (or ``collection:NAME`` / ``computer:ID``)."""
    if not targets:
        raise InvalidInput("give at least one --target (a collection or a computer)")
    chosen: dict[int, collections_.Member] = {}
    for target in targets:
        if not isinstance(target, str) or not target.strip():
            raise InvalidInput("a target must be a non-empty collection or computer name")
        if target.startswith("computer:"):
            computer = await computers.find(session, target)
            chosen[computer.id] = computer
            continue
        name = target.removeprefix("collection:")
        collection = await session.scalar(select(Collection).where(Collection.name == name))
        if collection is not None:
            for member in await collections_.member_refs(session, collection):
                chosen[member.id] = member
            continue
        if target.startswith("collection:"):
            await collections_.get(session, name)
        try:
            computer = await computers.find(session, target)
        except NotFound:
            raise NotFound(
                f"no collection or computer named {target!r}; "
                "'taskfleet collection list' and 'taskfleet computer list' show them"
            ) from None
        chosen[computer.id] = computer
    if not chosen:
        raise InvalidInput(f"the target {', '.join(targets)} holds no computers")
    return list(chosen.values())


async def start_run(
    state: NSState,
    session: AsyncSession,
    task_key: str,
    targets: list[str],
    live: bool,
    actor: str,
    *,
    exclude: list[str] | None = None,
    ignore_windows: bool = False,
    requirements: dict[str, Any] | None = None,
    origin: tuple[int, float, int] | None = None,  # (schedule, occurrence, coalesced)
    params: dict[str, str] | None = None,  # declared parameters' values (ns.parameters)
    expires_in_s: float | None = None,  # or expires_at; default 7 days (ns.expiry)
    expires_at: float | None = None,
) -> Run:
    task, job, plan = await task_or_job(session, task_key)
    if plan is None:
        assert task is not None
        values, sealed = parameters.for_run(task.type, task.params, params, state.secrets)
    else:
        values, sealed = parameters.check_values(plan.declared, params, state.secrets)
    needs = completion.Requirements.parse(requirements)
    expires = expiry.expires_at(time.time(), expires_in_s, expires_at)  # 400 before targets
    chosen = await targets_.without(session, await resolve_targets(session, targets), exclude or [])
    run = Run(
        task_id=task.id if task else None,
        job_id=job.id if job else None,
        plan=plan.plan if plan else None,
        targets=list(targets),
        live=live,
        created_at=time.time(),
        created_by=actor,
    )
    run.exclude, run.ignore_windows = list(exclude or []), ignore_windows
    run.params, run.sealed_params = values, sealed
    run.expires_at = expires
    run.requirements = needs.to_json()
    if plan is not None and plan.plan["kind"] == JobKind.SERVER:
        # Its steps' runs meet the requirements, and it ends with its job (ns.server_jobs).
        run.plan, run.requirements = {**plan.plan, "requirements": run.requirements}, {}
    if origin is not None:
        run.schedule_id, run.scheduled_for, run.coalesced = origin
    session.add(run)
    await session.flush()
    if server_jobs.is_job_run(run):  # its steps' runs hold the instances
        await server_jobs.start_step(state, session, run, 0, chosen)
        await run_rows.fan_out(state, session, run, [])
    else:
        await run_rows.fan_out(state, session, run, chosen)
    audit.record(
        session,
        actor,
        "run.start",
        task.name if task else job.name if job else "",
        run=run.id,
        targets=targets,
        computers=len(chosen),
        params=parameters.shown_values(values, sealed),
    )
    return run


async def task_or_job(
    session: AsyncSession, key: str
) -> tuple[Task | None, Job | None, job_plans.JobPlan | None]:
    """What ``key`` names: a task, or a job with its plan (they share one namespace)."""
    try:
        return await tasks.find(session, key), None, None
    except NotFound:
        try:
            job = await jobs.find(session, key)
        except NotFound:
            raise NotFound(
                f"no task or job {key!r}; see 'taskfleet task list' and 'taskfleet job list'"
            ) from None
    return None, job, await job_plans.make(session, job)


def _deliverable(redeliver_after_s: float) -> Any:
    cutoff = time.time() - redeliver_after_s
    return and_(
        Instance.state == InstanceState.PENDING,
        or_(Instance.delivered_at.is_(None), Instance.delivered_at < cutoff),
    )


async def computers_with_work(
    session: AsyncSession, task_server_id: int | None, redeliver_after_s: float
) -> list[int]:
    query = (
        select(Instance.computer_id)
        .join(Computer, Computer.id == Instance.computer_id)
        .where(_deliverable(redeliver_after_s))
        .distinct()
    )
    query = await window_hold.restrict(session, query)
    if task_server_id is None:
        query = query.where(Computer.task_server_id.is_(None))
    else:
        query = query.where(Computer.task_server_id == task_server_id)
    return list((await session.scalars(query)).all())


def _for_task_server(query: Any, task_server_id: int) -> Any:
    return query.join(Computer, Computer.id == Instance.computer_id).where(
        Computer.task_server_id == task_server_id
    )


async def work_waiting(
    session: AsyncSession, task_server_id: int, redeliver_after_s: float
) -> bool:
    query = _for_task_server(select(Instance.id), task_server_id)
    query = query.where(_deliverable(redeliver_after_s)).limit(1)
    query = await window_hold.restrict(session, query)
    return (await session.scalar(query)) is not None


async def deliver_batch(
    session: AsyncSession,
    task_server_id: int,
    limit: int,
    known_runs: set[int],
    redeliver_after_s: float,
    *,
    secrets: SecretBox | None = None,  # opens secret parameter values (ns.secrets)
) -> WorkBatch:
    """Up to ``limit`` instances waiting for the task server's computers, in one transaction.

    Each run's task travels once: runs in ``known_runs`` are left out of the reply.
    The instances are marked delivered; if the task server loses them (it restarts,
    its agent never asks), they are offered again after ``redeliver_after_s``.
    """
    query = _for_task_server(
        select(Instance.id, Instance.computer_id, Instance.run_id), task_server_id
    )
    query = query.where(_deliverable(redeliver_after_s)).order_by(Instance.id).limit(limit)
    query = await window_hold.restrict(session, query)
    if session.get_bind().dialect.name == "postgresql":
        # Two NS replicas answering the same task server never hand out one instance twice.
        query = query.with_for_update(of=Instance, skip_locked=True)
    rows = (await session.execute(query)).all()
    if rows:
        now = time.time()
        ids = [row.id for row in rows]
        for start in range(0, len(ids), 1000):
            await session.execute(
                update(Instance)
                .where(Instance.id.in_(ids[start : start + 1000]))
                .values(delivered_at=now)
            )
    wanted = {row.run_id for row in rows} - known_runs
    tasks_by_run = []
    if wanted:
        found = await session.execute(
            select(
                Run.id,
                Run.live,
                Task.type,
                Task.params,
                Task.timeout_s,
                Task.retries,
                Task.retry_backoff_s,
                Run.plan,
                Run.params.label("values"),
                Run.sealed_params,
            )
            .outerjoin(Task, Task.id == Run.task_id)  # none for a job's run
            .where(Run.id.in_(wanted))
        )
        tasks_by_run = [
            RunTask(
                r.id,
                *job_plans.delivered(r.type, r.params, r.timeout_s, r.plan),
                retries=r.retries or 0,  # (none for a job's run)
                retry_backoff_s=r.retry_backoff_s or 10.0,
                live=r.live,
                **parameters.delivered(r.values, r.sealed_params, secrets),
            )
            for r in found.all()
        ]
    return WorkBatch(
        work=[WorkRef(r.computer_id, r.id, r.run_id) for r in rows],
        runs=tasks_by_run,
        more=len(rows) == limit,
    )


async def deliver(
    session: AsyncSession,
    computer_id: int,
    redeliver_after_s: float,
    *,
    secrets: SecretBox | None = None,  # opens secret parameter values (ns.secrets)
) -> list[WorkItem]:
    query = (
        select(Instance, Task, Run.live, Run.params, Run.sealed_params, Run.plan)
        .join(Run, Run.id == Instance.run_id)
        .outerjoin(Task, Task.id == Run.task_id)  # none for a job's run
        .where(Instance.computer_id == computer_id, _deliverable(redeliver_after_s))
        .order_by(Instance.id)
        .limit(100)
    )
    rows = await session.execute(await window_hold.restrict(session, query))
    now = time.time()
    work = []
    for instance, task, live, values, sealed, plan in rows.all():
        instance.delivered_at = now
        task_type, params, timeout_s = job_plans.delivered(
            task.type if task else None, task.params if task else None,
            task.timeout_s if task else None, plan,
        )  # fmt: skip
        work.append(
            WorkItem(
                instance.id,
                instance.run_id,
                task_type,
                params,
                timeout_s,
                retries=task.retries if task else 0,
                retry_backoff_s=task.retry_backoff_s if task else 10.0,
                live=live,
                **parameters.delivered(values, sealed, secrets),
            )
        )
    return work


LIVE, BUFFERED = "live", "buffered"
REPORTS = (LIVE, BUFFERED)


def report_of(live: bool) -> str:
    return LIVE if live else BUFFERED


@dataclass
class RunSummary:
    id: int
    task: str
    targets: list[str]
    live: bool
    created_at: float
    created_by: str
    total: int
    counts: dict[str, int]
    done: bool
    instances: list[InstanceRow] = field(default_factory=list)
    # The declared parameters' values, secret ones masked (ns.parameters).
    params: dict[str, str] = field(default_factory=dict)
    # "live" (status at once) or "buffered" (every Send Status Interval): Run.live, named.
    report: str = "buffered"
    # Exclusions as given, windows, completion requirements and what ended the run (or
    # ends it now: ``complete``), and the schedule occurrence that started it.
    exclude: list[str] = field(default_factory=list)
    ignore_windows: bool = False
    requirements: dict[str, Any] = field(default_factory=dict)
    complete: bool = False
    ended_by: str | None = None
    ended_at: float | None = None
    schedule_id: int | None = None
    scheduled_for: float | None = None
    coalesced: int = 0
    # A server job's run: its steps' runs so far (ns.server_jobs); None for other runs.
    steps: list[StepRun] | None = None
    expires_at: float | None = None  # instances no agent received by then: Expired


async def summary(session: AsyncSession, run_id: int, with_instances: bool = True) -> RunSummary:
    if not 0 < run_id <= MAX_ID:
        raise NotFound(f"no run {run_id}; run numbers are what 'taskfleet run' printed")
    row = (
        await session.execute(
            select(Run, func.coalesce(Task.name, Job.name, "(a removed job)"))
            .outerjoin(Task, Task.id == Run.task_id)
            .outerjoin(Job, Job.id == Run.job_id)
            .where(Run.id == run_id)
        )
    ).first()
    if row is None:
        raise NotFound(
            f"no run {run_id}; 'taskfleet run-status' takes the number 'taskfleet run' printed"
        )
    run, task_name = row
    source, steps = run_id, None
    if server_jobs.is_job_run(run):  # its computers are in its current step's run
        steps = await server_jobs.step_runs(session, run)
        source = steps[-1]["run"] if steps else run_id
    counts = dict(
        (
            await session.execute(
                select(Instance.state, func.count())
                .where(Instance.run_id == source)
                .group_by(Instance.state)
            )
        ).all()
    )
    total = sum(counts.values())
    done = all(InstanceState(s).terminal for s in counts)
    result = RunSummary(
        run.id,
        task_name,
        run.targets,
        run.live,
        run.created_at,
        run.created_by,
        total,
        counts,
        done,
    )
    result.report = report_of(run.live)
    result.params = parameters.shown_values(run.params or {}, run.sealed_params or {})
    result.exclude, result.ignore_windows = run.exclude, run.ignore_windows
    result.requirements = run.requirements
    ended = completion.state_of(run, counts, time.time())
    if steps is not None:  # a server job is done when it ended, whatever its step's counts
        ended = (run.ended_at is not None, run.ended_by, run.ended_at)
        result.done, result.steps = run.ended_at is not None, steps
    result.complete, result.ended_by, result.ended_at = ended
    result.schedule_id, result.scheduled_for = run.schedule_id, run.scheduled_for
    result.coalesced = run.coalesced
    result.expires_at = run.expires_at
    if with_instances:
        rows = await session.execute(
            select(Instance, Computer.name)
            .join(Computer, Computer.id == Instance.computer_id)
            .where(Instance.run_id == source)
            .order_by(Computer.name)
        )
        for instance, name in rows.all():
            result.instances.append(
                {
                    "instance_id": instance.id,
                    "computer_id": instance.computer_id,
                    "computer": name,
                    "state": instance.state,
                    "return_code": instance.return_code,
                    "output": instance.output,
                    "received_at": instance.received_at,
                    "started_at": instance.started_at,
                    "finished_at": instance.finished_at,
                    "status_count": instance.status_count,
                    "reason": instance.reason,  # why the NS or agent ended it so
                }
            )
    return result
