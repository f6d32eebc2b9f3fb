"""Files for copy-file tasks (``ns.files``): the admin API, and task servers' fetches.

POST   /api/files?name=N      upload (the body is the file's bytes), 201 ``FileView``
GET    /api/files             every stored file
GET    /api/files/{key}       one, by name or id
DELETE /api/files/{key}       remove (409 while a copy-file task names it)
GET    /api/ts/files/{sha256} a task server fetches a file, streamed (R1: approved only;
                              only a file some computer assigned to it has open work for)
GET    /api/ts/files/{sha256}/grants/{computer_id}
                              204 when that computer, assigned to the task server, has
                              open work copying the file; 403 otherwise
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import StreamingResponse

from taskfleet.agent_endpoints.files import SHA256_HEADER
from taskfleet.errors import Forbidden
from taskfleet.ns import files
from taskfleet.ns.auth import Administrator, TaskServerApproved, Viewer
from taskfleet.ns.openapi import errors
from taskfleet.ns.state import ns_state
from taskfleet.storage.models import MAX_ID, StoredFile

router = APIRouter(prefix="/api", tags=["files"])
Sha256 = Annotated[str, Path(pattern="^[0-9a-f]{64}$", description="the file's SHA-256")]
ComputerId = Annotated[int, Path(ge=1, le=MAX_ID)]


@dataclass
class FileView:
    id: int
    name: str
    sha256: str
    size: int  # bytes
    created_at: float
    created_by: str
    used_by: list[str]  # copy-file tasks that name it


def _view(row: StoredFile, used_by: list[str]) -> FileView:
    return FileView(row.id, row.name, row.sha256, row.size, row.created_at, row.created_by, used_by)


@router.post(
    "/files",
    status_code=201,
    response_model=FileView,
    responses=errors(409, 413),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def upload(
    request: Request,
    admin: Administrator,
    name: Annotated[str, Query(min_length=1, max_length=255, description="the file's name")],
) -> FileView:
    """Store a file for copy-file tasks; it is addressed by its SHA-256 from then on. At
    most ``ns.files.MAX_FILE_BYTES`` (413 beyond, nothing stored)."""
    state = ns_state(request)
    name = files.check_name(name)
    async with state.session() as session:  # a clash is said before the upload is read
        if await session.scalar(files.select_name(name)) is not None:
            files.name_taken(name)
    spooled = await files.spool(request.stream(), state.settings.data_dir / "uploads")
    try:
        async with state.session() as session:
            row = await files.store(session, name, spooled, admin.name)
            return _view(row, [])
    finally:
        spooled.discard()


@router.get("/files", response_model=list[FileView])
async def list_files(request: Request, _: Viewer) -> list[FileView]:
    async with ns_state(request).session() as session:
        rows = await files.listing(session)
        uses = await files.uses(session)
        return [_view(r, uses.get(r.name, [])) for r in rows]


@router.get("/files/{key}", response_model=FileView, responses=errors(404))
async def show_file(request: Request, key: str, _: Viewer) -> FileView:
    async with ns_state(request).session() as session:
        row = await files.find(session, key)
        return _view(row, (await files.uses(session)).get(row.name, []))


@router.delete("/files/{key}", status_code=204, responses=errors(404, 409))
async def remove_file(request: Request, key: str, admin: Administrator) -> None:
    async with ns_state(request).session() as session:
        await files.remove(session, key, admin.name)


@router.get(
    "/ts/files/{sha256}",
    tags=["task server"],
    response_class=StreamingResponse,  # the file's bytes, not JSON
    responses={
        200: {
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            }
        },
        **errors(404),
    },
)
async def fetch_file(
    request: Request, sha256: Sha256, ts_id: TaskServerApproved
) -> StreamingResponse:
    """A task server fetches a copy-file task's file, which it caches and verifies."""
    state = ns_state(request)
    async with state.session() as session:
        if not await files.may_fetch(session, sha256, task_server_id=ts_id):
            raise Forbidden(
                f"no computer assigned to this task server has open copy-file work for {sha256}"
            )
        row = await files.by_sha256(session, sha256)
        size, file_id = row.size, row.id
    return StreamingResponse(
        files.content(state.session, file_id),
        media_type="application/octet-stream",
        headers={"Content-Length": str(size), SHA256_HEADER: sha256},
    )


@router.get(
    "/ts/files/{sha256}/grants/{computer_id}",
    status_code=204,
    tags=["task server"],
)
async def file_grant(
    request: Request, sha256: Sha256, computer_id: ComputerId, ts_id: TaskServerApproved
) -> None:
    """Whether a computer assigned to this task server may fetch the file: asked by a
    task server that did not hand it the work itself (it restarted since, or the agent
    failed over to it)."""
    async with ns_state(request).session() as session:
        allowed = await files.may_fetch(
            session, sha256, task_server_id=ts_id, computer_id=computer_id
        )
    if not allowed:
        raise Forbidden(
            f"computer {computer_id} is not assigned to this task server, or has no open "
            f"copy-file work for {sha256}"
        )
