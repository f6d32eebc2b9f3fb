"""Client jobs: the agent runs a job's steps on this computer and branches on its own.

The NS delivers a client job as one task of type ``job`` whose parameters are the
job's *plan* (``ns.job_plans``)::

    {"timeout_s": 1800, "steps": [
        {"name": "install", "task_type": "run-script", "params": {...}, "timeout_s": 600,
         "on_success": "continue", "on_failure": "stop-failed", "on_code": {"3010": "goto:3"}},
        {"name": "Reboot-and-check", "job": {"timeout_s": 900, "steps": [...]}, ...}]}

Every step runs as the job's instance (one ledger entry, so a job never runs twice,
and a cancel stops whichever step is running), through the same code a task of its
type runs with (``StepRunner``). The conditions of ``protocol.jobs`` pick the next
step. A step that times out or fails is a failed step, which its ``on_failure``
decides about; the job's own timeout ends it ``TimedOut`` whatever step it is in.

The instance's output is every step's, in the order they ran, each under a header
with the step's number, name, state and return code, so one computer's instance
shows the whole job (and ``run-output`` prints it).

A restart-agent or power-control step (``ENDING``) may end the agent under the job:
just before it acts, ``keep`` stores where the job stands (``Paused``); when the agent
starts again, ``run(..., resume=paused)`` goes on after that step, which counts as
ended as ``paused.outcome`` says (agent.job_resume). A job that goes on in the same
process (test mode, log off, a command that failed) clears what was kept first.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from taskfleet.agent.outcome import Outcome, failed
from taskfleet.errors import InvalidInput
from taskfleet.protocol import step_records
from taskfleet.protocol.fields import capped_output
from taskfleet.protocol.jobs import MAX_DEPTH, MAX_STEP_EXECUTIONS, decide, parse_conditions
from taskfleet.protocol.messages import InstanceState, TaskType, WorkItem

StepRunner = Callable[[WorkItem], Awaitable[Outcome]]
ENDING = frozenset({TaskType.RESTART_AGENT.value, TaskType.POWER_CONTROL.value})


@dataclass
class Paused:
    """Where a job stands while an ``ENDING`` step acts; with ``outcome``, how it resumes."""

    path: list[int]  # the step's index in each plan, the outermost first (nested jobs)
    executions: int
    sections: list[str]
    deadline_at: float  # wall clock: the monotonic clock starts again with the computer
    outcome: Outcome | None = None  # how the step ended, seen after the restart
    records: list[dict[str, Any]] = field(default_factory=list)  # as _Walk.records


Keep = Callable[[Paused | None], None]  # stores (None: clears) a job's progress; OSError


@dataclass
class _Walk:
    """One job instance's progress: shared by nested jobs, so every limit is the job's."""

    item: WorkItem
    run_step: StepRunner
    deadline: float
    executions: int = 0
    sections: list[str] = field(default_factory=list)
    # One step record per step run (protocol.step_records), reported with the status.
    records: list[dict[str, Any]] = field(default_factory=list)
    keep: Keep | None = None
    resume_at: list[int] = field(default_factory=list)  # indexes down to the paused step
    resumed: Outcome | None = None  # that step's outcome, until the walk is back there


def _header(path: str, name: str, outcome: Outcome) -> str:
    code = "" if outcome.return_code is None else f", return code {outcome.return_code}"
    return f"── step {path}: {name} — {outcome.state.value}{code} ──"


async def run(
    item: WorkItem, run_step: StepRunner, keep: Keep | None = None, resume: Paused | None = None
) -> Outcome:
    """Run the client job ``item`` (task type ``job``) to its end; with ``resume``, from
    the step after the one it was paused in."""
    walk = _Walk(item, run_step, time.monotonic() + item.timeout_s, keep=keep)
    if resume is not None and resume.outcome is not None:
        walk.deadline = time.monotonic() + (resume.deadline_at - time.time())
        walk.executions = resume.executions - len(resume.path)  # each level counts again
        walk.sections = list(resume.sections)
        walk.records = list(resume.records)
        walk.resume_at, walk.resumed = list(resume.path), resume.outcome
    try:
        outcome = await _steps(walk, item.params, "", 1)
    except _PlanError as exc:
        return Outcome(
            InstanceState.FAILED,
            None,
            f"taskfleet: the job cannot run: {exc}",
            step_records.bounded(walk.records),
        )
    body = "\n".join(walk.sections)
    summary = f"taskfleet: job {outcome.state.value.lower()}: {outcome.output}"
    output = f"{body}\n{summary}" if body else summary
    return replace(outcome, output=output, steps=step_records.bounded(walk.records))


def _record(walk: _Walk, path: str, name: str, outcome: Outcome, at: int | None = None) -> None:
    """The step's record; ``at``: where a nested job's own record goes (before its steps')."""
    output = capped_output(outcome.output.rstrip(), step_records.STEP_OUTPUT_LIMIT)
    entry = step_records.record(path, name, outcome.state.value, outcome.return_code, output)
    walk.records.insert(len(walk.records) if at is None else at, entry)


class _PlanError(Exception):
    """A plan this agent cannot follow (an NS newer than the agent, or a bad delivery)."""


async def _steps(walk: _Walk, plan: Mapping[str, Any], prefix: str, depth: int) -> Outcome:
    steps = plan.get("steps")
    if not isinstance(steps, Sequence) or not steps or depth > MAX_DEPTH:
        raise _PlanError("its plan has no steps, or nests too deep")
    own_deadline = walk.deadline
    if isinstance(plan.get("timeout_s"), int | float):
        own_deadline = min(own_deadline, time.monotonic() + float(plan["timeout_s"]))
    index, last_rc = (walk.resume_at.pop(0) if walk.resume_at else 0), None
    if not 0 <= index < len(steps):
        raise _PlanError(f"it was paused in step {index + 1}, which its plan does not have")
    while True:
        step = steps[index]
        if not isinstance(step, Mapping):
            raise _PlanError(f"step {index + 1} is not an object")
        path, name = f"{prefix}{index + 1}", str(step.get("name", f"step {index + 1}"))
        remaining = own_deadline - time.monotonic()
        walk.executions += 1
        resumed = walk.resumed if not walk.resume_at and "job" not in step else None
        if resumed is not None:  # back after the restart the job was paused for
            walk.resumed = None
        elif remaining <= 0:
            return Outcome(
                InstanceState.TIMED_OUT, last_rc, f"its timeout ran out before step {path} ({name})"
            )
        elif walk.executions > MAX_STEP_EXECUTIONS:
            return Outcome(
                InstanceState.FAILED,
                last_rc,
                f"it ran {MAX_STEP_EXECUTIONS} steps without ending (a goto loop?)",
            )
        try:
            conditions = parse_conditions(step, len(steps), index)
        except InvalidInput as exc:
            raise _PlanError(exc.message) from None
        if resumed is not None:
            outcome = resumed
            walk.sections.append(_header(path, name, outcome) + f"\n{outcome.output.rstrip()}")
            _record(walk, path, name, outcome)
        elif "job" in step:
            nested = step["job"]
            if not isinstance(nested, Mapping):
                raise _PlanError(f"step {path} names a job without a plan")
            first = _nested_start(walk, path)
            outcome = await _steps(walk, nested, f"{path}.", depth + 1)
            walk.sections.append(_header(path, name, outcome) + f"\n{outcome.output}")
            _record(walk, path, name, outcome, at=first)
        else:
            sub = replace(
                walk.item,
                task_type=str(step.get("task_type", "")),
                params=dict(step.get("params") or {}),
                timeout_s=min(float(step.get("timeout_s") or remaining), remaining),
            )
            outcome = await _run_task(walk, sub, path, remaining)
            walk.sections.append(_header(path, name, outcome) + f"\n{outcome.output.rstrip()}")
            _record(walk, path, name, outcome)
        last_rc = outcome.return_code
        if outcome.state == InstanceState.TIMED_OUT and time.monotonic() >= walk.deadline:
            return Outcome(InstanceState.TIMED_OUT, last_rc, f"its timeout ran out in step {path}")
        if outcome.state == InstanceState.CANCELED:
            return Outcome(InstanceState.CANCELED, last_rc, f"canceled in step {path}")
        succeeded = outcome.state == InstanceState.SUCCEEDED
        decision = decide(conditions, index, len(steps), succeeded, outcome.return_code)
        if decision.next is None:
            state = InstanceState.SUCCEEDED if decision.succeeded else InstanceState.FAILED
            return Outcome(state, last_rc, decision.reason)
        index = decision.next


async def _run_task(walk: _Walk, sub: WorkItem, path: str, remaining: float) -> Outcome:
    """A task step; an ``ENDING`` one with the job's progress kept while it acts (it may
    wait for its restart as long as the job may run)."""
    if sub.task_type not in ENDING or walk.keep is None:
        return await walk.run_step(sub)
    at = [int(i) - 1 for i in path.split(".")]
    deadline_at = time.time() + (walk.deadline - time.monotonic())
    try:
        paused = Paused(
            at, walk.executions, list(walk.sections), deadline_at, records=list(walk.records)
        )
        walk.keep(paused)
    except OSError as exc:
        return failed(f"cannot keep the job's progress: {exc}")
    outcome = await walk.run_step(replace(sub, timeout_s=remaining))
    try:
        walk.keep(None)  # it went on in this process: a later crash must not resume the job
    except OSError as exc:
        return failed(f"cannot clear the job's progress: {exc}")
    return outcome


def _nested_start(walk: _Walk, path: str) -> int:
    """Where nested job ``path``'s own record goes: before its steps' records, which
    start now, or when the walk resumes inside it, before the restart (the records of
    its steps last kept, ``path.N``)."""
    first = len(walk.records)
    if walk.resumed is None:
        return first
    while first and str(walk.records[first - 1].get("path")).startswith(f"{path}."):
        first -= 1
    return first
