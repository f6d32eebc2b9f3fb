"""Collections: create one (by name pattern, subnet, or static members), see and edit members."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from taskfleet.console.sessions import Changing, Viewing
from taskfleet.console.web import PREFIX, render
from taskfleet.errors import InvalidInput, TaskfleetError
from taskfleet.ns import collections as collections_
from taskfleet.ns import computers
from taskfleet.ns.state import ns_state
from taskfleet.ns.users import Role

router = APIRouter(prefix=PREFIX + "/collections", include_in_schema=False)


Text = Annotated[str, Form()]
SHOWN_MEMBERS = 500


async def _list(
    request: Request, form: dict[str, str] | None = None, error: TaskfleetError | None = None
) -> HTMLResponse:
    async with ns_state(request).session() as session:
        rows = await collections_.listed(session)
        stored = await collections_.counts(session)
    counts = {c.name: stored.get(c.id, 0) for c in rows}
    context = {
        "collections": rows,
        "counts": counts,
        "form": form or {"name": "", "description": "", "name_pattern": "", "cidr": ""},
        "field_errors": {error.field: error.message} if error and error.field else {},
        "error": error.message if error and not error.field else "",
    }
    status = error.status_code if error else 200
    return await render(
        request, "collections.html", context, status_code=status, page="collections"
    )


@router.get("")
async def collection_list(request: Request, user: Viewing) -> HTMLResponse:
    return await _list(request)


@router.post("")
async def create(
    request: Request,
    user: Changing,
    name: Text = "",
    description: Text = "",
    name_pattern: Text = "",
    cidr: Text = "",
) -> Response:
    user.require(Role.ADMIN)
    form = {"name": name, "description": description, "name_pattern": name_pattern, "cidr": cidr}
    rules: dict[str, object] = {}
    if name_pattern.strip():
        rules["name_pattern"] = name_pattern.strip()
    if cidr.strip():
        rules["cidr"] = [c.strip() for c in cidr.split(",") if c.strip()]
    try:
        async with ns_state(request).session() as session:
            made = await collections_.create(session, name, description.strip(), rules, user.name)
    except TaskfleetError as exc:
        return await _list(request, form, exc)
    return RedirectResponse(f"{PREFIX}/collections/{made.id}", status_code=303)


async def _page(request: Request, name: str, error: str = "", typed: str = "") -> HTMLResponse:
    async with ns_state(request).session() as session:
        collection = await collections_.find(session, name)
        members = await collections_.members(session, collection, limit=SHOWN_MEMBERS)
        total = (await collections_.counts(session, collection)).get(collection.id, 0)
        membership = await collections_.load_membership(session, [m.id for m in members])
    static = membership.static.get(collection.id, set())
    context = {
        "c": collection,
        "members": members,
        "total": total,
        "static": static,
        "error": "",
        "member_error": error,
        "typed": typed,
    }
    status = 400 if error else 200
    return await render(request, "collection.html", context, status_code=status, page="collections")


@router.get("/{name}")
async def collection_page(request: Request, name: str, user: Viewing) -> HTMLResponse:
    return await _page(request, name)


async def _change(
    request: Request, name: str, user: Changing, keys: list[str], add: bool
) -> Response:
    user.require(Role.ADMIN)
    state = ns_state(request)
    try:
        if not any(keys):
            raise InvalidInput("give one or more computer names, separated by commas")
        async with state.session() as session:
            collection = await collections_.find(session, name)
            collection_id = collection.id
            found = [await computers.find(session, key) for key in keys if key]
            await collections_.set_static(session, collection, found, add, user.name)
    except TaskfleetError as exc:
        return await _page(request, name, exc.message, ", ".join(keys))
    return RedirectResponse(f"{PREFIX}/collections/{collection_id}", status_code=303)


@router.post("/{name}/add")
async def add_members(
    request: Request, name: str, user: Changing, computers: Text = ""
) -> Response:
    return await _change(request, name, user, [c.strip() for c in computers.split(",")], True)


@router.post("/{name}/remove")
async def remove_member(
    request: Request, name: str, user: Changing, computer: Text = ""
) -> Response:
    return await _change(request, name, user, [computer], False)
