"""A job's plan: the job as one run delivers it, with every task it runs written in.

A run of a job keeps its plan (``Run.plan``), made when the run starts, so editing
the job or its tasks later changes nothing for a run already under way, and a
task server caches it like any run's task (``RunTask``, task type ``job``). The
agent follows it (``agent.client_jobs``); the NS follows a server job's plan step
by step (``ns.server_jobs``).

Parameters: a job run takes one set of values, and each step's task takes those
of its declared parameters (``ns.parameters``); a value no step declares is refused
when the run is made, like a required one no value was given for.

Restart-agent and power-control steps are steps like any other: a server job runs
one as a step run, and a client job's agent keeps the job's progress before it acts
and goes on after the restart (``agent.job_resume``). Refused when the run is made:
a client job's restart or shut-down delayed as long as the job may run, after which
the job could never go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import InvalidInput
from taskfleet.ns import parameters, script_tasks
from taskfleet.protocol.jobs import JOB_TASK_TYPE, MAX_DEPTH, JobKind
from taskfleet.protocol.messages import TaskType
from taskfleet.storage.models import Job, Run, Task

# How a server job's run ended (Run.ended_by; ns.server_jobs, ns.cancel).
JOB_SUCCEEDED, JOB_FAILED = "job_succeeded", "job_failed"
JOB_TIMED_OUT, JOB_CANCELED = "job_timed_out", "job_canceled"
# Power actions after which a client job waits for the computer to start again.
_RESTARTS = {"restart": "restarts", "shutdown": "shuts down"}


@dataclass
class JobPlan:
    plan: dict[str, Any]  # kind, timeout_s, steps (with their tasks written in)
    declared: list[parameters.Declared]  # what a run's parameter values are checked against


def is_job_run(run: Run) -> bool:
    """Is ``run`` a server job's own run (the one people follow), not one of its steps?"""
    plan = run.plan or {}
    return plan.get("kind") == JobKind.SERVER and run.parent_run_id is None


async def current_step(session: AsyncSession, job_run: Run) -> Run | None:
    """The step run a server job's run started last (None before the first)."""
    query = select(Run).where(Run.parent_run_id == job_run.id).order_by(Run.id.desc()).limit(1)
    return await session.scalar(query)


async def make(session: AsyncSession, job: Job) -> JobPlan:
    """The plan of ``job``, and the parameters its tasks declare (each name once)."""
    tasks: dict[int, Task] = {}
    jobs: dict[int, Job] = {job.id: job}
    plan = await _plan(session, job, tasks, jobs, 1, None)
    seen: dict[str, parameters.Declared] = {}
    for task_id in sorted(task_ids(plan)):
        for declaration in parameters.loaded(tasks[task_id].params.get("parameters")):
            seen.setdefault(declaration.name, declaration)
    return JobPlan(plan, list(seen.values()))


async def _plan(
    session: AsyncSession,
    job: Job,
    tasks: dict[int, Task],
    jobs: dict[int, Job],
    depth: int,
    client_limit_s: float | None,
) -> dict[str, Any]:
    """``client_limit_s``: how long a client job around this one may run (None: none; a
    job nested in a server job runs as a client job on each computer)."""
    if depth > MAX_DEPTH:  # ns.jobs refuses this when the job is saved
        raise InvalidInput(f"job {job.name!r} nests deeper than {MAX_DEPTH}")
    wanted_tasks = {s["task"] for s in job.steps if "task" in s} - tasks.keys()
    if wanted_tasks:
        rows = await session.scalars(select(Task).where(Task.id.in_(wanted_tasks)))
        tasks.update((t.id, t) for t in rows.all())
    wanted_jobs = {s["job"] for s in job.steps if "job" in s} - jobs.keys()
    if wanted_jobs:
        for found in (await session.scalars(select(Job).where(Job.id.in_(wanted_jobs)))).all():
            jobs[found.id] = found
    limit_s = client_limit_s
    if depth == 1 and job.kind == JobKind.CLIENT:
        limit_s = job.timeout_s
    steps: list[dict[str, Any]] = []
    for index, step in enumerate(job.steps):
        conditions = {k: step[k] for k in ("on_success", "on_failure", "on_code") if k in step}
        if "task" in step:
            task = tasks.get(step["task"])
            if task is None:
                raise InvalidInput(
                    f"job {job.name!r}, step {index + 1}: its task was removed; edit the job"
                )
            _check_restart(job, index, task, limit_s)
            steps.append(
                {
                    "name": task.name,
                    "task_id": task.id,
                    "task_type": task.type,
                    "params": script_tasks.for_agent(task.params),
                    "timeout_s": task.timeout_s,
                    **conditions,
                }
            )
        else:
            nested = jobs.get(step["job"])
            if nested is None:
                raise InvalidInput(
                    f"job {job.name!r}, step {index + 1}: its job was removed; edit the job"
                )
            inner_limit = nested.timeout_s if limit_s is None else min(limit_s, nested.timeout_s)
            inner = await _plan(session, nested, tasks, jobs, depth + 1, inner_limit)
            steps.append({"name": nested.name, "job": inner, **conditions})
    return {"kind": job.kind, "timeout_s": job.timeout_s, "steps": steps}


def _check_restart(job: Job, index: int, task: Task, limit_s: float | None) -> None:
    """A client job waits for the restart or shut-down its step orders; one delayed as
    long as the job may run could never let the job go on (a server job's step ends when
    the command is given, so any delay does there)."""
    if task.type != TaskType.POWER_CONTROL or limit_s is None:
        return
    action, delay_s = task.params.get("action"), float(task.params.get("delay_s") or 0)
    if action in _RESTARTS and delay_s >= limit_s:
        raise InvalidInput(
            f"job {job.name!r}, step {index + 1}: {task.name!r} {_RESTARTS[action]} the "
            f"computer after {delay_s:g} s, but the job may run only {limit_s:g} s, so it "
            "could never go on after it; give the job a longer timeout or the task a shorter "
            "delay"
        )


def task_ids(plan: dict[str, Any]) -> set[int]:
    """Every task a plan runs, nested jobs' too."""
    found: set[int] = set()
    for step in plan.get("steps", []):
        if "job" in step:
            found |= task_ids(step["job"])
        elif "task_id" in step:
            found.add(int(step["task_id"]))
    return found


def delivered(
    task_type: str | None, params: dict[str, Any] | None, timeout_s: float | None, plan: Any
) -> tuple[str, dict[str, Any], float]:
    """``(task_type, params, timeout_s)`` that a run's ``RunTask``/``WorkItem`` carry: its
    task's, or for a job's run the plan it keeps, as a task of type ``job``."""
    if plan is not None:
        return JOB_TASK_TYPE, plan, float(plan["timeout_s"])
    assert task_type is not None and params is not None and timeout_s is not None
    return task_type, script_tasks.for_agent(params), timeout_s
