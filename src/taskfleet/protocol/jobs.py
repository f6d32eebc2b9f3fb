"""Jobs: an ordered list of steps, each with conditions that say what comes next.

A step is a task (or a nested job). When it ends, its conditions decide, in this
order:

1. ``on_code``: a return code listed there (``{"3010": "continue"}``);
2. ``on_success`` when the step succeeded (default ``continue``);
3. ``on_failure`` otherwise (default ``stop-failed``): failed, timed out, or a
   nested job that ended failed.

An action is ``continue`` (the next step; after the last one the job has
succeeded), ``stop-succeeded``, ``stop-failed`` or ``goto:K`` (step K, counted
from 1). A ``goto`` may go back, so a job could loop: every job is bounded by its
timeout and by ``MAX_STEP_EXECUTIONS``, after which it ends failed with that reason.

The same rules serve both kinds of job (SPEC section 2): a *client* job's agent
applies them on its computer alone (``Decision`` per step); a *server* job's NS
applies them to a whole step across all targets, once the step's run met its
completion requirements.

This module is pure (no I/O): the NS validates job definitions with it, and the
agent, which imports only the protocol, runs client jobs with it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from taskfleet.errors import InvalidInput

JOB_TASK_TYPE = "job"  # the task type a client job travels as (its params: the plan)
MAX_STEPS = 100
MAX_DEPTH = 4  # a job inside a job inside a job inside a job
MAX_STEP_EXECUTIONS = 1000  # per job instance, counting every goto


class JobKind(enum.StrEnum):
    CLIENT = "client"  # each computer runs and branches on its own
    SERVER = "server"  # step by step across all targets


class Action(enum.StrEnum):
    CONTINUE = "continue"
    STOP_SUCCEEDED = "stop-succeeded"
    STOP_FAILED = "stop-failed"
    GOTO = "goto"


_GOTO = re.compile(r"^goto:([1-9][0-9]{0,2})$")


@dataclass(frozen=True)
class Then:
    """One parsed action: what to do, and for ``goto`` the step (0-based index)."""

    action: Action
    step: int | None = None

    def __str__(self) -> str:
        if self.action == Action.GOTO:
            assert self.step is not None
            return f"goto:{self.step + 1}"
        return self.action.value


def parse_action(text: object, steps: int, where: str, label: str = "") -> Then:
    """``continue``, ``stop-succeeded``, ``stop-failed`` or ``goto:K`` with 1 <= K <= steps.

    ``where`` is the field path an error names (``steps.0.on_failure``, counted from 0
    like every field path); ``label`` how a person reads it (``step 1, on_failure``).
    """
    label = label or where
    if isinstance(text, str):
        goto = _GOTO.match(text.strip())
        if goto:
            k = int(goto.group(1))
            if k > steps:
                raise InvalidInput(
                    f"{label}: 'goto:{k}' names step {k}, but the job has {steps} steps",
                    field=where,
                )
            return Then(Action.GOTO, k - 1)
        try:
            action = Action(text.strip())
        except ValueError:
            pass
        else:
            if action != Action.GOTO:
                return Then(action)
    raise InvalidInput(
        f"{label}: {text!r} is not an action; use continue, stop-succeeded, stop-failed "
        "or goto:K (K a step number, from 1)",
        field=where,
    )


@dataclass(frozen=True)
class Conditions:
    """What follows a step, by how it ended."""

    on_success: Then = Then(Action.CONTINUE)
    on_failure: Then = Then(Action.STOP_FAILED)
    on_code: tuple[tuple[int, Then], ...] = ()

    def as_json(self) -> dict[str, object]:
        return {
            "on_success": str(self.on_success),
            "on_failure": str(self.on_failure),
            "on_code": {str(code): str(then) for code, then in self.on_code},
        }


def parse_conditions(data: Mapping[str, object], steps: int, index: int) -> Conditions:
    """Step ``index``'s conditions from JSON (``on_success``, ``on_failure``, ``on_code``)."""
    where, label = f"steps.{index}", f"step {index + 1}"

    def action(key: str, default: str) -> Then:
        return parse_action(data.get(key, default), steps, f"{where}.{key}", f"{label}, {key}")

    on_success, on_failure = action("on_success", "continue"), action("on_failure", "stop-failed")
    codes = data.get("on_code") or {}
    if not isinstance(codes, Mapping):
        raise InvalidInput(
            f'{label}: on_code must map return codes to actions, e.g. {{"3010": "continue"}}',
            field=f"{where}.on_code",
        )
    on_code = []
    for key, text in codes.items():
        try:
            code = int(str(key))
        except ValueError:
            code = None
        if code is None or not -(2**31) <= code < 2**31:
            raise InvalidInput(
                f"{label}, on_code: {key!r} is not a return code (a 32-bit integer)",
                field=f"{where}.on_code",
            )
        then = parse_action(text, steps, f"{where}.on_code.{code}", f"{label}, on code {code}")
        on_code.append((code, then))
    return Conditions(on_success, on_failure, tuple(sorted(on_code)))


@dataclass(frozen=True)
class Decision:
    """After a step: run step ``next`` (0-based), or the job has ended (``succeeded``)."""

    next: int | None
    succeeded: bool = False
    reason: str = ""


def decide(
    conditions: Conditions, index: int, steps: int, succeeded: bool, return_code: int | None
) -> Decision:
    """What follows step ``index`` (0-based) of ``steps``, which ended as given."""
    then = None
    if return_code is not None:
        then = dict(conditions.on_code).get(return_code)
        why = f"step {index + 1} returned {return_code}"
    if then is None:
        then = conditions.on_success if succeeded else conditions.on_failure
        why = f"step {index + 1} {'succeeded' if succeeded else 'failed'}"
    if then.action == Action.CONTINUE:
        if index + 1 < steps:
            return Decision(index + 1)
        return Decision(None, succeeded=True, reason=f"{why}; it was the last step")
    if then.action == Action.GOTO:
        return Decision(then.step)
    ok = then.action == Action.STOP_SUCCEEDED
    return Decision(None, succeeded=ok, reason=f"{why}: {then.action.value}")


def task_steps(plan: Mapping[str, object]) -> Iterator[Mapping[str, object]]:
    """Every task step of a delivered plan, nested jobs' too, in order."""
    steps = plan.get("steps")
    for step in steps if isinstance(steps, list) else []:
        if not isinstance(step, Mapping):
            continue
        nested = step.get("job")
        if isinstance(nested, Mapping):
            yield from task_steps(nested)
        else:
            yield step
