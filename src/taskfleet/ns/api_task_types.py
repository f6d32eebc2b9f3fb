"""Creating copy-file, power-control and inventory tasks (``ns.task_types``), one model each.

POST /api/tasks/copy-file       ``CopyFileTask``: the stored file is named by name, and
                                resolved to its SHA-256 and size here
POST /api/tasks/power-control   ``PowerControlTask``
POST /api/tasks/inventory       ``InventoryTask``

The replies are the task as ``GET /api/tasks/{key}`` shows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import Field

from taskfleet.ns import files, tasks
from taskfleet.ns.auth import Administrator
from taskfleet.ns.openapi import errors
from taskfleet.ns.state import ns_state
from taskfleet.ns.task_types import MAX_DELAY_S, MAX_MESSAGE, MAX_PATH, POWER_ACTIONS
from taskfleet.ns.work_replies import TaskView, task_view
from taskfleet.protocol.fields import Finite, Name, ShortText, text
from taskfleet.protocol.messages import TaskType

router = APIRouter(prefix="/api/tasks", tags=["work"])


@dataclass
class CopyFileTask:
    name: Name
    file: Name  # a stored file's name ('taskfleet file list')
    path: Annotated[str, text(MAX_PATH, min_length=1)]  # absolute, on the computer
    mode: Annotated[ShortText, Field(pattern="^0?[0-7]{3,4}$")] = "0644"  # octal
    owner: ShortText = ""  # user or user:group; needs an agent running as root
    timeout_s: Finite = 600.0


@dataclass
class PowerControlTask:
    name: Name
    action: Annotated[ShortText, Field(json_schema_extra={"enum": list(POWER_ACTIONS)})]
    delay_s: Annotated[int, Field(ge=0, le=MAX_DELAY_S)] = 0
    message: Annotated[str, text(MAX_MESSAGE)] = ""
    timeout_s: Finite = 120.0


@dataclass
class InventoryTask:
    name: Name
    timeout_s: Finite = 120.0


async def _create(
    request: Request, name: str, type_: str, params: dict[str, Any], timeout_s: float, actor: str
) -> TaskView:
    async with ns_state(request).session() as session:
        if type_ == TaskType.COPY_FILE:
            stored = await files.find(session, params["file"])
            params = {**params, "file": stored.name, "sha256": stored.sha256, "size": stored.size}
        task = await tasks.create(session, name, type_, params, timeout_s, actor)
        return task_view(task)


@router.post("/copy-file", status_code=201, responses=errors(404, 409))
async def create_copy_file(request: Request, body: CopyFileTask, admin: Administrator) -> TaskView:
    """A task that copies a stored file to ``path`` with ``mode`` (and ``owner``)."""
    params = {"file": body.file, "path": body.path, "mode": body.mode, "owner": body.owner}
    return await _create(request, body.name, TaskType.COPY_FILE, params, body.timeout_s, admin.name)


@router.post("/power-control", status_code=201, responses=errors(409))
async def create_power_control(
    request: Request, body: PowerControlTask, admin: Administrator
) -> TaskView:
    """Restart, shut down or log off, after ``delay_s`` seconds, with a message."""
    params = {"action": body.action, "delay_s": body.delay_s, "message": body.message}
    return await _create(
        request, body.name, TaskType.POWER_CONTROL, params, body.timeout_s, admin.name
    )


@router.post("/inventory", status_code=201, responses=errors(409))
async def create_inventory(request: Request, body: InventoryTask, admin: Administrator) -> TaskView:
    """A task that makes each computer send its inventory now (a built-in one exists:
    'Inventory')."""
    return await _create(request, body.name, TaskType.INVENTORY, {}, body.timeout_s, admin.name)
