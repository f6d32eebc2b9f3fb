"""The Task Servers policy (R3, R9): per collection, an ordered list of task servers.

Every edit changes the draft only; the banner on every page says so until an
admin clicks Apply, which makes the draft one numbered, audited version.
Applied versions can be compared and an older one applied again.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select

from taskfleet.console.sessions import Changing, ConsoleUser, Viewing
from taskfleet.console.web import PREFIX, render
from taskfleet.errors import InvalidInput, TaskfleetError
from taskfleet.ns import documents
from taskfleet.ns.state import NSState, ns_state
from taskfleet.ns.users import Role
from taskfleet.storage.models import Collection, TaskServer

router = APIRouter(prefix=PREFIX + "/policy", include_in_schema=False)
KIND = documents.POLICY
Text = Annotated[str, Form()]
HERE = PREFIX + "/policy"


@router.get("")
async def policy_page(request: Request, user: Viewing) -> HTMLResponse:
    async with ns_state(request).session() as session:
        draft = await documents.draft_document(session, KIND)
        latest = await documents.latest(session, KIND)
        collections = (
            await session.scalars(select(Collection.name).order_by(Collection.name))
        ).all()
        servers = (await session.scalars(select(TaskServer.name).order_by(TaskServer.name))).all()
    context = {
        "entries": draft["entries"],
        "latest": latest,
        "collections": collections,
        "servers": servers,
        "notice": request.query_params.get("notice", ""),
        "form_error": request.query_params.get("error", ""),
        "error_form": request.query_params.get("form", ""),
    }
    return await render(request, "policy.html", context, page="policy")


async def _edit(
    state: NSState, user: ConsoleUser, change: Any, form: str = "list"
) -> RedirectResponse:
    """Load the draft's entries, let ``change`` edit them in place, save the draft.

    A mistake comes back to the page, shown by the form it came from (``form``).
    """
    user.require(Role.ADMIN)
    try:
        async with state.session() as session:
            entries = [dict(e) for e in (await documents.draft_document(session, KIND))["entries"]]
            change(entries)
            entries = [e for e in entries if e["task_servers"]]  # an empty list says nothing
            await documents.save_draft(session, KIND, {"entries": entries}, user.name)
    except TaskfleetError as exc:
        query = urlencode({"error": exc.message, "form": form})
        return RedirectResponse(f"{HERE}?{query}", status_code=303)
    return RedirectResponse(HERE, status_code=303)


def _entry(entries: list[dict[str, Any]], collection: str) -> dict[str, Any]:
    for entry in entries:
        if entry["collection"] == collection:
            entry["task_servers"] = list(entry["task_servers"])
            return entry
    raise InvalidInput(f"the policy has no list for collection {collection!r}")


def _move(items: list[Any], index: int, direction: str) -> None:
    target = index - 1 if direction == "up" else index + 1
    if direction not in ("up", "down"):
        raise InvalidInput("direction must be up or down")
    if 0 <= target < len(items):
        items[index], items[target] = items[target], items[index]


@router.post("/add")
async def add(
    request: Request, user: Changing, collection: Text = "", task_server: Text = ""
) -> RedirectResponse:
    def change(entries: list[dict[str, Any]]) -> None:
        if not collection or not task_server:
            raise InvalidInput("choose a collection and a task server to add")
        found = [e for e in entries if e["collection"] == collection]
        if not found:
            entries.append({"collection": collection, "task_servers": []})
        entry = _entry(entries, collection)
        if task_server in entry["task_servers"]:
            raise InvalidInput(f"{task_server} is on the list for {collection!r} already")
        entry["task_servers"].append(task_server)

    return await _edit(ns_state(request), user, change, form="add")


@router.post("/move")
async def move(
    request: Request, user: Changing, collection: Text, task_server: Text, direction: Text
) -> RedirectResponse:
    def change(entries: list[dict[str, Any]]) -> None:
        servers = _entry(entries, collection)["task_servers"]
        if task_server not in servers:
            raise InvalidInput(f"{task_server} is not on the list for {collection!r}")
        _move(servers, servers.index(task_server), direction)

    return await _edit(ns_state(request), user, change)


@router.post("/order")
async def order(
    request: Request, user: Changing, collection: Text, order: Text
) -> RedirectResponse:
    """The whole list in a new order, as dragging leaves it."""

    def change(entries: list[dict[str, Any]]) -> None:
        entry = _entry(entries, collection)
        wanted = [name for name in order.split(",") if name]
        if sorted(wanted) != sorted(entry["task_servers"]):
            raise InvalidInput("the new order must hold the same task servers; reload the page")
        entry["task_servers"] = wanted

    return await _edit(ns_state(request), user, change)


@router.post("/remove")
async def remove(
    request: Request, user: Changing, collection: Text, task_server: Text
) -> RedirectResponse:
    def change(entries: list[dict[str, Any]]) -> None:
        servers = _entry(entries, collection)["task_servers"]
        if task_server in servers:
            servers.remove(task_server)

    return await _edit(ns_state(request), user, change)


@router.post("/move-collection")
async def move_collection(
    request: Request, user: Changing, collection: Text, direction: Text
) -> RedirectResponse:
    def change(entries: list[dict[str, Any]]) -> None:
        names = [e["collection"] for e in entries]
        if collection not in names:
            raise InvalidInput(f"the policy has no list for collection {collection!r}")
        _move(entries, names.index(collection), direction)

    return await _edit(ns_state(request), user, change)


@router.post("/apply")
async def apply(request: Request, user: Changing) -> RedirectResponse:
    user.require(Role.ADMIN)
    state = ns_state(request)
    async with state.session() as session:
        version = await documents.apply(session, KIND, user.name)
    state.agents_changed()
    return RedirectResponse(f"{HERE}?notice=Applied+as+version+{version.version}", status_code=303)


@router.post("/discard")
async def discard(request: Request, user: Changing) -> RedirectResponse:
    user.require(Role.ADMIN)
    async with ns_state(request).session() as session:
        await documents.discard_draft(session, KIND, user.name)
    return RedirectResponse(f"{HERE}?notice=Unapplied+changes+discarded", status_code=303)


@router.get("/versions")
async def versions(
    request: Request, user: Viewing, a: int | None = None, b: int | None = None
) -> HTMLResponse:
    async with ns_state(request).session() as session:
        applied = await documents.versions(session, KIND)
    by_number = {v.version: v for v in applied}
    compare = None
    if a is not None and b is not None:
        if a not in by_number or b not in by_number:
            raise InvalidInput(f"compare two applied versions; there are {len(applied)}")
        compare = _compare(by_number[a].document, by_number[b].document)
    context = {"versions": list(reversed(applied)), "a": a, "b": b, "compare": compare}
    return await render(request, "policy_versions.html", context, page="policy")


def _compare(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """Per collection, in the newer order: its list before and after."""
    before = {e["collection"]: e["task_servers"] for e in old["entries"]}
    after = {e["collection"]: e["task_servers"] for e in new["entries"]}
    names = list(after) + [n for n in before if n not in after]
    return [
        {
            "collection": n,
            "before": before.get(n),
            "after": after.get(n),
            "changed": before.get(n) != after.get(n),
        }
        for n in names
    ]


@router.post("/versions/{number}/reapply")
async def reapply(request: Request, number: int, user: Changing) -> RedirectResponse:
    user.require(Role.ADMIN)
    state = ns_state(request)
    async with state.session() as session:
        version = await documents.reapply(session, KIND, number, user.name)
    state.agents_changed()
    notice = f"Version+{number}+applied+again+as+version+{version.version}"
    return RedirectResponse(f"{HERE}?notice={notice}", status_code=303)
