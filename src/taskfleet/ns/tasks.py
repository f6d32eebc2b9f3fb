"""Tasks: what a run executes. Run-script tasks are written by admins; built-ins ship."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import Conflict, InvalidInput, NotFound
from taskfleet.ns import audit
from taskfleet.protocol.messages import INTERPRETERS, TaskType
from taskfleet.storage.models import Task, is_id

MAX_SCRIPT_BYTES = 256 * 1024
MAX_TIMEOUT_S = 7 * 24 * 3600.0
RESTART_AGENT = "Restart agent"


def check_task(type_: str, params: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    if type_ == TaskType.RUN_SCRIPT:
        script = params.get("script")
        interpreter = params.get("interpreter", "sh")
        if not isinstance(script, str) or not script.strip():
            raise InvalidInput("a run-script task needs a non-empty 'script'", field="script")
        if len(script.encode()) > MAX_SCRIPT_BYTES:
            raise InvalidInput(
                f"the script is larger than {MAX_SCRIPT_BYTES} bytes", field="script"
            )
        if interpreter not in INTERPRETERS:
            raise InvalidInput(
                f"interpreter {interpreter!r} is not supported; "
                f"use one of {', '.join(INTERPRETERS)}",
                field="interpreter",
            )
        params = {"script": script, "interpreter": interpreter}
    elif type_ == TaskType.RESTART_AGENT:
        params = {}
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
) -> Task:
    name = _check_name(name)
    if await session.scalar(select(Task.id).where(Task.name == name)):
        raise Conflict(f"a task named {name!r} already exists", field="name")
    params = check_task(type_, params, timeout_s)
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
) -> Task:
    """Edit a run-script task; runs already started keep what they were given."""
    if task.builtin:
        raise InvalidInput(f"{task.name!r} is built in and cannot be edited")
    name = _check_name(name)
    if name != task.name and await session.scalar(select(Task.id).where(Task.name == name)):
        raise Conflict(f"a task named {name!r} already exists", field="name")
    task.params = check_task(task.type, params, timeout_s)
    task.name, task.timeout_s = name, timeout_s
    audit.record(session, actor, "task.edit", name)
    return task
