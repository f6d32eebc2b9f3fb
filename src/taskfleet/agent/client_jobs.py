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
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from taskfleet.agent.outcome import Outcome
from taskfleet.errors import InvalidInput
from taskfleet.protocol.jobs import MAX_DEPTH, MAX_STEP_EXECUTIONS, decide, parse_conditions
from taskfleet.protocol.messages import InstanceState, WorkItem

StepRunner = Callable[[WorkItem], Awaitable[Outcome]]


@dataclass
class _Walk:
    """One job instance's progress: shared by nested jobs, so every limit is the job's."""

    item: WorkItem
    run_step: StepRunner
    deadline: float
    executions: int = 0
    sections: list[str] = field(default_factory=list)


def _header(path: str, name: str, outcome: Outcome) -> str:
    code = "" if outcome.return_code is None else f", return code {outcome.return_code}"
    return f"── step {path}: {name} — {outcome.state.value}{code} ──"


async def run(item: WorkItem, run_step: StepRunner) -> Outcome:
    """Run the client job ``item`` (task type ``job``) to its end."""
    walk = _Walk(item, run_step, time.monotonic() + item.timeout_s)
    try:
        outcome = await _steps(walk, item.params, "", 1)
    except _PlanError as exc:
        return Outcome(InstanceState.FAILED, None, f"taskfleet: the job cannot run: {exc}")
    body = "\n".join(walk.sections)
    summary = f"taskfleet: job {outcome.state.value.lower()}: {outcome.output}"
    return replace(outcome, output=f"{body}\n{summary}" if body else summary)


class _PlanError(Exception):
    """A plan this agent cannot follow (an NS newer than the agent, or a bad delivery)."""


async def _steps(walk: _Walk, plan: Mapping[str, Any], prefix: str, depth: int) -> Outcome:
    steps = plan.get("steps")
    if not isinstance(steps, Sequence) or not steps or depth > MAX_DEPTH:
        raise _PlanError("its plan has no steps, or nests too deep")
    own_deadline = walk.deadline
    if isinstance(plan.get("timeout_s"), int | float):
        own_deadline = min(own_deadline, time.monotonic() + float(plan["timeout_s"]))
    index, last_rc = 0, None
    while True:
        step = steps[index]
        if not isinstance(step, Mapping):
            raise _PlanError(f"step {index + 1} is not an object")
        path, name = f"{prefix}{index + 1}", str(step.get("name", f"step {index + 1}"))
        remaining = own_deadline - time.monotonic()
        walk.executions += 1
        if remaining <= 0:
            return Outcome(
                InstanceState.TIMED_OUT, last_rc, f"its timeout ran out before step {path} ({name})"
            )
        if walk.executions > MAX_STEP_EXECUTIONS:
            return Outcome(
                InstanceState.FAILED,
                last_rc,
                f"it ran {MAX_STEP_EXECUTIONS} steps without ending (a goto loop?)",
            )
        try:
            conditions = parse_conditions(step, len(steps), index)
        except InvalidInput as exc:
            raise _PlanError(exc.message) from None
        if "job" in step:
            nested = step["job"]
            if not isinstance(nested, Mapping):
                raise _PlanError(f"step {path} names a job without a plan")
            outcome = await _steps(walk, nested, f"{path}.", depth + 1)
            walk.sections.append(_header(path, name, outcome) + f"\n{outcome.output}")
        else:
            sub = replace(
                walk.item,
                task_type=str(step.get("task_type", "")),
                params=dict(step.get("params") or {}),
                timeout_s=min(float(step.get("timeout_s") or remaining), remaining),
            )
            outcome = await walk.run_step(sub)
            walk.sections.append(_header(path, name, outcome) + f"\n{outcome.output.rstrip()}")
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
