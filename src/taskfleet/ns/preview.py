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

from taskfleet.ns import runs, script_tasks, tasks
from taskfleet.ns import targets as targets_
from taskfleet.protocol.messages import TaskType
from taskfleet.storage.models import Computer

NAMED = 20  # computers named in a warning, at most


@dataclass
class RunPreview:
    task: str
    type: str
    interpreter: str | None  # None: the task runs no script
    computers: int
    lacking: int  # targets that reported interpreters, without this one
    lacking_computers: list[str]  # the first NAMED of them, by name
    unknown: int  # targets that never reported their interpreters
    warning: str  # "" when every target has the interpreter
    parameters: list[dict[str, Any]] = field(default_factory=list)  # shown (masked)


def warning_text(interpreter: str, lacking: int, names: list[str]) -> str:
    if not lacking:
        return ""
    shown = ", ".join(names[:5]) + (f" and {lacking - 5} more" if lacking > 5 else "")
    one = lacking == 1
    return (
        f"{lacking} target computer{'' if one else 's'} lack{'s' if one else ''} the "
        f"'{interpreter}' interpreter ({shown}); the script will fail there at once"
    )


async def preview(
    session: AsyncSession, task_key: str, targets: list[str], exclude: list[str] | None = None
) -> RunPreview:
    task = await tasks.find(session, task_key)
    chosen = await runs.resolve_targets(session, targets)
    chosen = await targets_.without(session, chosen, exclude or [])
    interpreter = task.params.get("interpreter") if task.type == TaskType.RUN_SCRIPT else None
    lacking: list[str] = []
    unknown = 0
    if interpreter:
        ids = [c.id for c in chosen]
        for start in range(0, len(ids), 1000):
            rows = await session.execute(
                select(Computer.name, Computer.interpreters).where(
                    Computer.id.in_(ids[start : start + 1000])
                )
            )
            for name, found in rows.all():
                if not found:
                    unknown += 1
                elif interpreter not in found:
                    lacking.append(name)
    lacking.sort()
    shown = script_tasks.shown(task.params).get("parameters", [])
    return RunPreview(
        task=task.name,
        type=task.type,
        interpreter=interpreter,
        computers=len(chosen),
        lacking=len(lacking),
        lacking_computers=lacking[:NAMED],
        unknown=unknown,
        warning=warning_text(interpreter or "", len(lacking), lacking),
        parameters=shown,
    )
