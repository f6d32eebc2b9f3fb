"""The Task Servers policy (R3, R9): per collection, an ordered list of task servers.

Every edit changes the draft only; the banner on every page says so until an
admin clicks Apply, which makes the draft one numbered, audited version.
Applied versions can be compared and an older one applied again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from taskfleet.console.sessions import Changing, ConsoleUser, Viewing
from taskfleet.console.web import PREFIX, render
from taskfleet.errors import InvalidInput, TaskfleetError
from taskfleet.ns import collections, computer_views, drafts
from taskfleet.ns.policy import Policy
from taskfleet.ns.state import NSState, Session, ns_state
from taskfleet.ns.users import Role

router = APIRouter(prefix=PREFIX + "/policy", include_in_schema=False)
KIND = drafts.POLICY
Text = Annotated[str, Form()]
HERE = PREFIX + "/policy"


@router.get("")
async def policy_page(request: Request, user: Viewing) -> HTMLResponse:
    async with ns_state(request).session() as session:
        draft = await drafts.draft_policy(session)
        latest = await drafts.latest(session, KIND)
        collection_names = await collections.names(session)
        servers = sorted((await computer_views.task_server_names(session)).values())
    context = {
        "entries": draft.entries,
        "latest": latest,
        "collections": collection_names,
        "servers": servers,
        "notice": request.query_params.get("notice", ""),
        "form_error": request.query_params.get("error", ""),
        "error_form": request.query_params.get("form", ""),
    }
    return await render(request, "policy.html", context, page="policy")


async def _edit(
    state: NSState,
    user: ConsoleUser,
    change: Callable[[Session], Awaitable[object]],
    form: str = "list",
) -> RedirectResponse:
    """Run one of the NS's editing steps (``ns.drafts``) on the draft.

    A mistake comes back to the page, shown by the form it came from (``form``).
    """
    user.require(Role.ADMIN)
    try:
        async with state.session() as session:
            await change(session)
    except TaskfleetError as exc:
        query = urlencode({"error": exc.message, "form": form})
        return RedirectResponse(f"{HERE}?{query}", status_code=303)
    return RedirectResponse(HERE, status_code=303)


@router.post("/add")
async def add(
    request: Request, user: Changing, collection: Text = "", task_server: Text = ""
) -> RedirectResponse:
    def change(session: Session) -> Awaitable[object]:
        return drafts.add_task_server(session, collection, task_server, user.name)

    return await _edit(ns_state(request), user, change, form="add")


@router.post("/move")
async def move(
    request: Request, user: Changing, collection: Text, task_server: Text, direction: Text
) -> RedirectResponse:
    def change(session: Session) -> Awaitable[object]:
        return drafts.move_task_server(session, collection, task_server, direction, user.name)

    return await _edit(ns_state(request), user, change)


@router.post("/order")
async def order(
    request: Request, user: Changing, collection: Text, order: Text
) -> RedirectResponse:
    """The whole list in a new order, as dragging leaves it."""
    wanted = [name for name in order.split(",") if name]

    def change(session: Session) -> Awaitable[object]:
        return drafts.order_task_servers(session, collection, wanted, user.name)

    return await _edit(ns_state(request), user, change)


@router.post("/remove")
async def remove(
    request: Request, user: Changing, collection: Text, task_server: Text
) -> RedirectResponse:
    def change(session: Session) -> Awaitable[object]:
        return drafts.remove_task_server(session, collection, task_server, user.name)

    return await _edit(ns_state(request), user, change)


@router.post("/move-collection")
async def move_collection(
    request: Request, user: Changing, collection: Text, direction: Text
) -> RedirectResponse:
    def change(session: Session) -> Awaitable[object]:
        return drafts.move_entry(session, KIND, collection, direction, user.name)

    return await _edit(ns_state(request), user, change)


@router.post("/apply")
async def apply(request: Request, user: Changing) -> RedirectResponse:
    user.require(Role.ADMIN)
    async with ns_state(request).session() as session:  # the epoch moves once committed
        version = await drafts.apply(session, KIND, user.name)
    return RedirectResponse(f"{HERE}?notice=Applied+as+version+{version.version}", status_code=303)


@router.post("/discard")
async def discard(request: Request, user: Changing) -> RedirectResponse:
    user.require(Role.ADMIN)
    async with ns_state(request).session() as session:
        await drafts.discard_draft(session, KIND, user.name)
    return RedirectResponse(f"{HERE}?notice=Unapplied+changes+discarded", status_code=303)


@router.get("/versions")
async def versions(
    request: Request, user: Viewing, a: int | None = None, b: int | None = None
) -> HTMLResponse:
    async with ns_state(request).session() as session:
        applied = await drafts.versions(session, KIND)
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
    before = {e.collection: list(e.task_servers) for e in Policy.from_json(old).entries}
    after = {e.collection: list(e.task_servers) for e in Policy.from_json(new).entries}
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
    async with ns_state(request).session() as session:  # the epoch moves once committed
        version = await drafts.reapply(session, KIND, number, user.name)
    notice = f"Version+{number}+applied+again+as+version+{version.version}"
    return RedirectResponse(f"{HERE}?notice={notice}", status_code=303)
