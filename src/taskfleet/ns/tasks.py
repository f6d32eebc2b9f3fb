"""Tasks: what a run executes. Run-script tasks are written by admins; built-ins ship."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import Conflict, InvalidInput, NotFound
from taskfleet.ns import audit, script_tasks, task_types
from taskfleet.ns.secrets import SecretBox
from taskfleet.protocol.messages import TaskType
from taskfleet.storage.models import Job, Task, is_id

MAX_SCRIPT_BYTES = script_tasks.MAX_SCRIPT_BYTES
MAX_TIMEOUT_S = 7 * 24 * 3600.0
RESTART_AGENT = "Restart agent"


def check_task(
    type_: str,
    params: dict[str, Any],
    timeout_s: float,
    *,
    box: SecretBox | None = None,
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A task's params, checked; ``box`` seals secret parameter defaults, ``previous``
    (the params before an edit) keeps a secret default given back masked."""
    if type_ == TaskType.RUN_SCRIPT:
        params = script_tasks.check(params, box, previous)
    elif type_ == TaskType.RESTART_AGENT:
        params = {}
    elif type_ in task_types.CHECKS:
        params = task_types.CHECKS[type_](params)
    else:
        raise InvalidInput(f"task type {type_!r} is not known; use {TaskType.RUN_SCRIPT}")
    if not 1 <= timeout_s <= MAX_TIMEOUT_S:  # also refuses nan
        raise InvalidInput(
            f"timeout must be between 1 and {MAX_TIMEOUT_S:.0f} seconds", field="timeout_s"
        )
    return params


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 255 or "\x00" in name:
        raise InvalidInput(
            "a task name must be 1 to 255 characters, without NUL (\\u0000)", field="name"
        )
    return name


async def _not_a_job(session: AsyncSession, name: str) -> None:
    """Tasks and jobs share names (ns.jobs): ``taskfleet run NAME`` must mean one thing."""
    if await session.scalar(select(Job.id).where(Job.name == name)) is not None:
        raise Conflict(
            f"a job is named {name!r}; jobs and tasks share names, so 'taskfleet run "
            f"{name}' means one thing. Choose another name",
            field="name",
        )


async def ensure_builtins(session: AsyncSession) -> None:
    if await session.scalar(select(Task.id).where(Task.name == RESTART_AGENT)) is None:
        session.add(
            Task(
                name=RESTART_AGENT,
                type=TaskType.RESTART_AGENT,
                params={},
                timeout_s=60,
                builtin=True,
                created_at=time.time(),
                created_by="taskfleet",
            )
        )


async def create(
    session: AsyncSession,
    name: str,
    type_: str,
    params: dict[str, Any],
    timeout_s: float,
    actor: str,
    *,
    box: SecretBox | None = None,
) -> Task:
    name = _check_name(name)
    if await session.scalar(select(Task.id).where(Task.name == name)):
        raise Conflict(f"a task named {name!r} already exists", field="name")
    await _not_a_job(session, name)
    params = check_task(type_, params, timeout_s, box=box)
    task = Task(
        name=name,
        type=type_,
        params=params,
        timeout_s=timeout_s,
        created_at=time.time(),
        created_by=actor,
    )
    session.add(task)
    await session.flush()
    audit.record(session, actor, "task.create", name, type=type_)
    return task


async def find(session: AsyncSession, key: str) -> Task:
    query = select(Task).where(Task.name == key)
    if is_id(key):
        query = select(Task).where(or_(Task.id == int(key), Task.name == key))
    task = await session.scalar(query)
    if task is None:
        raise NotFound(f"no task {key!r}; 'taskfleet task list' shows them")
    return task


async def update(
    session: AsyncSession,
    task: Task,
    name: str,
    params: dict[str, Any],
    timeout_s: float,
    actor: str,
    *,
    box: SecretBox | None = None,
) -> Task:
    """Edit a run-script task; runs already started keep what they were given."""
    if task.builtin:
        raise InvalidInput(f"{task.name!r} is built in and cannot be edited")
    name = _check_name(name)
    if name != task.name and await session.scalar(select(Task.id).where(Task.name == name)):
        raise Conflict(f"a task named {name!r} already exists", field="name")
    await _not_a_job(session, name)
    task.params = check_task(task.type, params, timeout_s, box=box, previous=task.params)
    task.name, task.timeout_s = name, timeout_s
    audit.record(session, actor, "task.edit", name)
    return task


async def listed(session: AsyncSession) -> list[Task]:
    """Every task by name."""
    return list((await session.scalars(select(Task).order_by(Task.name))).all())


async def names(session: AsyncSession) -> list[str]:
    return list((await session.scalars(select(Task.name).order_by(Task.name))).all())
