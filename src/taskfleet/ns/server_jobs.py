"""Server jobs: the NS runs a job step by step across all of its run's targets.

A run of a server job (the *job run*) holds no instances of its own. Each step
is a run of its own (a *step run*: ``parent_run_id`` names the job run, ``step``
its index), on the computers the job run resolved when it started, with the job
run's parameter values, completion requirements and windows. A step starts only
when the one before it is complete by its requirements (``ns.completion`` records
that); then the step's conditions (``protocol.jobs``) decide for the whole job:

- the step *succeeded* when at least one computer finished it and every computer
  that finished it succeeded (computers still pending when the requirements ended
  the step count neither way);
- its *return code*, for ``on_code``, is the code every computer that finished it
  returned, when they all returned the same one.

A step that is a job runs as a client job on every computer (``agent.client_jobs``).
The job ends when a condition stops it, after its last step, or at its timeout;
the job run then records ``ended_by`` (``job_succeeded``, ``job_failed``,
``job_timed_out``), and the audit log says why. The duty that advances job runs
(``advance``) runs on one NS replica at a time (``ns.run_duties``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.ns import audit, cancel, completion, job_plans, run_rows
from taskfleet.ns import collections as collections_
from taskfleet.ns.job_plans import JOB_FAILED, JOB_SUCCEEDED, JOB_TIMED_OUT
from taskfleet.ns.run_replies import StepRun
from taskfleet.ns.state import NSState
from taskfleet.protocol.jobs import JobKind, decide, parse_conditions
from taskfleet.protocol.messages import InstanceState
from taskfleet.storage.models import Computer, Instance, Run

SUCCEEDED, FAILED, TIMED_OUT = JOB_SUCCEEDED, JOB_FAILED, JOB_TIMED_OUT
is_job_run = job_plans.is_job_run


async def start_step(
    state: NSState,
    session: AsyncSession,
    job_run: Run,
    index: int,
    computers: Sequence[collections_.Member],
) -> Run:
    """The step run for step ``index`` of ``job_run``, on ``computers``."""
    assert job_run.plan is not None
    step = job_run.plan["steps"][index]
    child = Run(
        task_id=step.get("task_id"),
        job_id=None,
        plan=None,
        targets=list(job_run.targets),
        live=job_run.live,
        created_at=time.time(),
        created_by=job_run.created_by,
    )
    if "job" in step:  # a job as a step: a client job on every computer
        child.plan = {**step["job"], "kind": JobKind.CLIENT.value}
    child.params, child.sealed_params = dict(job_run.params), dict(job_run.sealed_params)
    child.exclude, child.ignore_windows = list(job_run.exclude), job_run.ignore_windows
    child.requirements = dict(job_run.plan.get("requirements") or {})
    child.parent_run_id, child.step = job_run.id, index
    child.expires_at = job_run.expires_at
    session.add(child)
    await session.flush()
    await run_rows.fan_out(state, session, child, computers)
    audit.record(
        session,
        job_run.created_by,
        "run.step",
        step["name"],
        run=job_run.id,
        step=index + 1,
        step_run=child.id,
        computers=len(computers),
    )
    return child


def step_result(rows: Iterable[tuple[str, int | None]]) -> tuple[bool, int | None]:
    """(succeeded, common return code) of a step from its instances' (state, rc)."""
    finished = [(s, rc) for s, rc in rows if InstanceState(s).terminal]
    ok = all(s == InstanceState.SUCCEEDED for s, _ in finished) and bool(finished)
    codes = {rc for _, rc in finished}
    return ok, (codes.pop() if len(codes) == 1 else None)


async def advance(state: NSState, session: AsyncSession, now: float | None = None) -> list[int]:
    """Move on every open job run whose current step has completed; returns the job
    runs that changed. One replica at a time runs this (a duty lock), and a job run
    ends only while open, so no step starts twice."""
    now = time.time() if now is None else now
    query = select(Run).where(
        Run.ended_at.is_(None), Run.job_id.isnot(None), Run.parent_run_id.is_(None)
    )
    changed = []
    for job_run in (await session.scalars(query)).all():
        if is_job_run(job_run) and await _advance_one(state, session, job_run, now):
            changed.append(job_run.id)
    return changed


async def _advance_one(state: NSState, session: AsyncSession, job_run: Run, now: float) -> bool:
    assert job_run.plan is not None
    steps: list[dict[str, Any]] = job_run.plan["steps"]
    current = await job_plans.current_step(session, job_run)
    if now > job_run.created_at + float(job_run.plan["timeout_s"]):
        step = f"step {current.step + 1}" if current and current.step is not None else "its start"
        if current is not None and current.ended_at is None:  # stop what it is running
            await cancel.cancel(state, session, current.id, None, "ns (the job's timeout)")
        why = f"the job's timeout ran out in {step}"
        return await completion.record_end(session, job_run.id, TIMED_OUT, now, why)
    if current is None or current.ended_at is None or current.step is None:
        return False  # the first step is started with the run; the others wait
    rows = await session.execute(
        select(Instance.state, Instance.return_code).where(Instance.run_id == current.id)
    )
    succeeded, rc = step_result((row.state, row.return_code) for row in rows)
    index = current.step
    conditions = parse_conditions(steps[index], len(steps), index)
    decision = decide(conditions, index, len(steps), succeeded, rc)
    if decision.next is None:
        outcome = SUCCEEDED if decision.succeeded else FAILED
        return await completion.record_end(session, job_run.id, outcome, now, decision.reason)
    computers = await session.execute(
        select(Instance.computer_id, Computer.task_server_id)
        .join(Computer, Computer.id == Instance.computer_id)
        .where(Instance.run_id == current.id)
    )
    chosen = [collections_.MemberRef(*row) for row in computers]
    await start_step(state, session, job_run, decision.next, chosen)
    return True


async def step_runs(session: AsyncSession, job_run: Run) -> list[StepRun]:
    """The job run's step runs so far, in the order they started (a goto may repeat one)."""
    assert job_run.plan is not None
    steps = job_run.plan["steps"]
    found = await session.execute(
        select(Run.id, Run.step, Run.ended_by, Run.ended_at)
        .where(Run.parent_run_id == job_run.id)
        .order_by(Run.id)
    )
    return [
        {
            "run": row.id,
            "step": row.step + 1,
            "name": steps[row.step]["name"],
            "ended_by": row.ended_by,
            "ended_at": row.ended_at,
        }
        for row in found
        if row.step is not None
    ]
