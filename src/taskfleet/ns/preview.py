"""What a run would do before it is started: how many computers, which lack the interpreter.

The NS knows each computer's interpreters (``Computer.interpreters``, from its facts).
A script whose interpreter a computer lacks fails there at once (``agent.scripts``);
the CLI, the API and the console's run form warn before the run is started, naming
how many targets lack it and which (the first few), so the admin is not surprised.
Computers that never reported their interpreters are counted apart, not as lacking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.ns import job_plans, runs, script_tasks
from taskfleet.ns import targets as targets_
from taskfleet.protocol.messages import TaskType
from taskfleet.storage.models import Computer, Task

NAMED = 20  # computers named in a warning, at most


@dataclass
class RunPreview:
    task: str  # the task's or job's name
    type: str  # the task's type, or "job"
    interpreter: str | None  # None: no script; a job's several: "sh, powershell"
    computers: int
    lacking: int  # targets that reported interpreters, without this one
    lacking_computers: list[str]  # the first NAMED of them, by name
    unknown: int  # targets that never reported their interpreters
    warning: str  # "" when every target has the interpreter
    parameters: list[dict[str, Any]] = field(default_factory=list)  # shown (masked)


def warning_text(interpreters: list[str], lacking: int, names: list[str]) -> str:
    if not lacking:
        return ""
    shown = ", ".join(names[:5]) + (f" and {lacking - 5} more" if lacking > 5 else "")
    one = lacking == 1
    what = (
        f"the '{interpreters[0]}' interpreter"
        if len(interpreters) == 1
        else f"an interpreter the job uses ({', '.join(interpreters)})"
    )
    return (
        f"{lacking} target computer{'' if one else 's'} lack{'s' if one else ''} {what} "
        f"({shown}); the script will fail there at once"
    )


async def _needs(session: AsyncSession, key: str) -> tuple[str, str, list[str], list[Any]]:
    """Name, type, interpreters and declared parameters of the task or job ``key``."""
    task, job, plan = await runs.task_or_job(session, key)
    if task is not None:
        script = task.type == TaskType.RUN_SCRIPT
        needed = [str(task.params.get("interpreter", "sh"))] if script else []
        return task.name, task.type, needed, script_tasks.shown(task.params).get("parameters", [])
    assert job is not None and plan is not None
    ids = sorted(job_plans.task_ids(plan.plan))
    steps = (await session.scalars(select(Task).where(Task.id.in_(ids)))).all() if ids else []
    needed = sorted(
        {str(t.params.get("interpreter", "sh")) for t in steps if t.type == TaskType.RUN_SCRIPT}
    )
    return job.name, "job", needed, [d.shown() for d in plan.declared]


async def preview(
    session: AsyncSession, task_key: str, targets: list[str], exclude: list[str] | None = None
) -> RunPreview:
    """The preview of a run of ``task_key`` on ``targets`` minus ``exclude``, resolved as
    ``runs.start_run`` resolves them (an unknown exclusion is the same 404), so the warning
    counts only the computers the run would reach; every caller passes the exclusions."""
    name, type_, needed, declared = await _needs(session, task_key)
    chosen = await runs.resolve_targets(session, targets)
    chosen = await targets_.without(session, chosen, exclude or [])
    lacking: list[str] = []
    unknown = 0
    if needed:
        ids = [c.id for c in chosen]
        for start in range(0, len(ids), 1000):
            rows = await session.execute(
                select(Computer.name, Computer.interpreters).where(
                    Computer.id.in_(ids[start : start + 1000])
                )
            )
            for computer, found in rows.all():
                if not found:
                    unknown += 1
                elif any(i not in found for i in needed):
                    lacking.append(computer)
    lacking.sort()
    return RunPreview(
        task=name,
        type=type_,
        interpreter=", ".join(needed) or None,
        computers=len(chosen),
        lacking=len(lacking),
        lacking_computers=lacking[:NAMED],
        unknown=unknown,
        warning=warning_text(needed, len(lacking), lacking),
        parameters=declared,
    )
