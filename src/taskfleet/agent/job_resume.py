"""Client jobs across their own restart-agent and power-control steps.

"Install the software, then restart the computer, then check" is a job an administrator
runs every week; its restart step ends the agent (or the whole computer) under the job.
So just before such a step acts (``client_jobs.ENDING``), the agent writes where the job
stands beside its ledger, ``ID.job`` (mode 0600: the work item may hold secret parameter
values, like the credential beside it): the job's work item, the step's place
(``client_jobs.Paused``), the sections and step records so far, the job's deadline as
wall-clock time, and the boot id.

When the agent starts again and finds the job's instance ``Running`` with that file, it
does not fail it (``agent.interrupted``, for a kill -9 in a script step) but resumes the
job (``resumed``): the step counts as Succeeded, and the job goes on after it by that
step's conditions (after the last step, it has succeeded). A restart or shut-down the
agent ordered but that has not happened yet (same boot: the agent alone restarted) is
waited for again, never ordered twice. A job that goes on in the same process (test
mode, log off, a command that failed) removes the file before its next step, so a crash
later in the job fails its instance as any other, and no step ever runs twice.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from taskfleet.agent import power, process_tree
from taskfleet.agent.client_jobs import Paused
from taskfleet.agent.outcome import Outcome, succeeded
from taskfleet.errors import InvalidInput
from taskfleet.protocol.messages import InstanceState, TaskType, WorkItem, from_json, to_json
from taskfleet.protocol.private_file import write_private_json

SUFFIX = ".job"
POLL_S = 1.0  # how often a wait for the restart looks whether the instance was canceled
RESTARTS = ("restart", "shutdown")  # power actions that end the computer (log off does not)


@dataclass
class Saved:
    item: WorkItem  # the job's, as delivered
    paused: Paused
    boot: str  # the boot id when the step acted ("" where there is no /proc)
    test_mode: bool  # power control only recorded its command


def _path(directory: Path, instance_id: int) -> Path:
    return directory / f"{int(instance_id)}{SUFFIX}"


def keep(directory: Path, item: WorkItem, paused: Paused | None, test_mode: bool = False) -> None:
    """Store (``None``: remove) job ``item``'s progress, durably: a restart follows."""
    if paused is None:
        forget(directory, item.instance_id)
        return
    data = {
        "item": to_json(item),
        "paused": asdict(replace(paused, outcome=None)),
        "boot": process_tree.boot_id(),
        "test_mode": test_mode,
    }
    write_private_json(_path(directory, item.instance_id), data)


def load(directory: Path, instance_id: int) -> Saved | None:
    """The progress kept for ``instance_id``; None when there is none (or it is unreadable:
    the instance is then failed as any interrupted one)."""
    try:
        data = json.loads(_path(directory, instance_id).read_text())
        paused = data["paused"]
        return Saved(
            from_json(WorkItem, data["item"]),
            Paused(
                [int(i) for i in paused["path"]],
                int(paused["executions"]),
                [str(s) for s in paused["sections"]],
                float(paused["deadline_at"]),
                records=[dict(r) for r in paused.get("records") or [] if isinstance(r, dict)],
            ),
            str(data.get("boot") or ""),
            bool(data.get("test_mode")),
        )
    except (OSError, ValueError, KeyError, TypeError, InvalidInput):
        return None


def forget(directory: Path, instance_id: int) -> None:
    _path(directory, instance_id).unlink(missing_ok=True)


def step_of(saved: Saved) -> Mapping[str, Any]:
    """The step the job was paused in, from the plan it travelled with."""
    plan: Any = saved.item.params
    step: Any = {}
    for index in saved.paused.path:
        if isinstance(step, Mapping) and isinstance(step.get("job"), Mapping):
            plan = step["job"]
        steps = plan.get("steps") if isinstance(plan, Mapping) else None
        if not isinstance(steps, list) or not 0 <= index < len(steps):
            return {}
        step = steps[index]
    return step if isinstance(step, Mapping) else {}


def after_restart(saved: Saved, boot: str) -> Outcome | None:
    """How the paused step ended, now that the agent runs again; None when it ordered a
    restart or shut-down that has not happened yet (the same boot)."""
    step = step_of(saved)
    if step.get("task_type") == TaskType.RESTART_AGENT:
        return succeeded("the agent restarted; the job went on after it")
    params = step.get("params")
    action = str(params.get("action")) if isinstance(params, Mapping) else ""
    if action in RESTARTS and not saved.test_mode and saved.boot and saved.boot == boot:
        return None
    what = "restarted" if action == "restart" else "started again"
    return succeeded(f"the computer {what} ({action}); the job went on after it")


async def wait_for_restart(deadline_at: float, canceled: Callable[[], bool]) -> Outcome:
    """A restart or shut-down was ordered: wait for it, which stops this agent and so the
    wait. Returns only when it does not come in the job's time, or the job is canceled."""
    while (left := deadline_at - time.time()) > 0:
        if canceled():
            return Outcome(InstanceState.CANCELED, None, "taskfleet: canceled before the restart")
        await asyncio.sleep(min(POLL_S, left))
    return Outcome(
        InstanceState.TIMED_OUT, None, "taskfleet: the computer did not restart in the job's time"
    )


async def power_step(
    item: WorkItem,
    test_file: Path | None,
    flush: Callable[[], Awaitable[None]],
    canceled: Callable[[], bool],
) -> Outcome:
    """A client job's power-control step: the command (``agent.power``), then for a real
    restart or shut-down the wait for it; the job resumes after it in the next agent.
    Status is sent first: the command may stop this agent at once."""
    await flush()
    result = await power.run(item.params, test_file, None)
    assert result is not None  # (None only after a report_first)
    ordered = result.state == InstanceState.SUCCEEDED
    if test_file is not None or str(item.params.get("action")) not in RESTARTS or not ordered:
        return result
    return await wait_for_restart(time.time() + item.timeout_s, canceled)


async def restart_agent_step(restart: Callable[[], Awaitable[None]]) -> Outcome:
    """A client job's restart-agent step: the agent stops (``restart``), which cancels
    this walk; the job resumes in the agent that starts then."""
    await restart()
    await asyncio.Event().wait()
    raise AssertionError("the agent's stop cancels a restart-agent step")


async def resumed(directory: Path, saved: Saved, canceled: Callable[[], bool]) -> Paused:
    """Where the job goes on, once the step it was paused in has ended; the kept file is
    removed first, so the steps after it never run twice."""
    outcome = after_restart(saved, process_tree.boot_id())
    if outcome is None:
        outcome = await wait_for_restart(saved.paused.deadline_at, canceled)
    forget(directory, saved.item.instance_id)
    return replace(saved.paused, outcome=outcome)
