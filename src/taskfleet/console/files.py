"""Files for copy-file tasks in the console: list, upload (admins), remove (``ns.files``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile

from taskfleet.console.sessions import Changing, Viewing
from taskfleet.console.web import PREFIX, render
from taskfleet.errors import InvalidInput, TaskfleetError
from taskfleet.ns import files
from taskfleet.ns.state import ns_state
from taskfleet.ns.users import Role

router = APIRouter(prefix=PREFIX + "/files", include_in_schema=False)
HERE = PREFIX + "/files"


async def _page(request: Request, error: TaskfleetError | None = None) -> HTMLResponse:
    async with ns_state(request).session() as session:
        rows = await files.listing(session)
        uses = await files.uses(session)
    context = {
        "files": [{"row": r, "used_by": uses.get(r.name, [])} for r in rows],
        "max_mib": files.MAX_FILE_BYTES // (1024 * 1024),
        "field_errors": {error.field: error.message} if error and error.field else {},
        "error": error.message if error and not error.field else "",
    }
    status = error.status_code if error else 200
    return await render(request, "files.html", context, status_code=status, page="files")


@router.get("")
async def file_list(request: Request, user: Viewing) -> HTMLResponse:
    return await _page(request)


async def _pieces(upload: UploadFile) -> AsyncIterator[bytes]:
    while piece := await upload.read(1024 * 1024):
        yield piece


@router.post("")
async def upload(request: Request, user: Changing) -> Response:
    user.require(Role.ADMIN)
    form = await request.form()  # (parsed already by Changing; files spooled to disk)
    chosen, name = form.get("file"), form.get("name")
    state = ns_state(request)
    try:
        if not isinstance(chosen, UploadFile) or not chosen.filename:
            raise InvalidInput("choose a file to upload", field="file")
        label = name if isinstance(name, str) and name.strip() else chosen.filename
        spooled = await files.spool(_pieces(chosen), state.settings.data_dir / "uploads")
        try:
            async with state.session() as session:
                await files.store(session, label, spooled, user.name)
        finally:
            spooled.discard()
    except TaskfleetError as exc:
        return await _page(request, exc)
    return RedirectResponse(HERE, status_code=303)


@router.post("/{file_id}/remove")
async def remove(request: Request, file_id: int, user: Changing) -> Response:
    user.require(Role.ADMIN)
    try:
        async with ns_state(request).session() as session:
            await files.remove(session, str(file_id), user.name)
    except TaskfleetError as exc:
        return await _page(request, exc)
    return RedirectResponse(HERE, status_code=303)
