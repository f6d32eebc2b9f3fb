"""Agent configuration (R5, R7, R9): intervals per collection in priority order, as a draft.

The R7 advice on this page is computed for the draft, so the admin sees what
the intervals they are about to apply mean for their fleet.
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from taskfleet.console.sessions import Changing, Viewing
from taskfleet.console.web import PREFIX, render
from taskfleet.errors import InvalidInput, NotFound, TaskfleetError
from taskfleet.ns import advice, collections, drafts
from taskfleet.ns.agent_config import DEFAULT_SSI_S, DEFAULT_TASK_REQUEST_INTERVAL_MIN
from taskfleet.ns.state import ns_state
from taskfleet.ns.users import Role

router = APIRouter(prefix=PREFIX + "/agent-config", include_in_schema=False)
KIND = drafts.AGENT_CONFIG
HERE = PREFIX + "/agent-config"
Text = Annotated[str, Form()]


async def _page(
    request: Request, form: dict[str, str] | None = None, error: TaskfleetError | None = None
) -> HTMLResponse:
    state = ns_state(request)
    async with state.session() as session:
        draft = await drafts.draft_agent_config(session)
        latest = await drafts.latest(session, KIND)
        names = await collections.names(session)
        found = await advice.fleet_advice(session, state.settings.ts_capacity_rps, draft=True)
    context = {
        "entries": draft.entries,
        "latest": latest,
        "collections": names,
        "advice": found,
        "form": form or {"collection": "", "tri": "5", "ssi": "60", "inv": ""},
        "field_errors": {error.field: error.message} if error and error.field else {},
        "error": error.message if error and not error.field else "",
        "notice": request.query_params.get("notice", ""),
        "defaults": (DEFAULT_TASK_REQUEST_INTERVAL_MIN, DEFAULT_SSI_S),
    }
    status = error.status_code if error else 200
    return await render(
        request, "agent_config.html", context, status_code=status, page="agent-config"
    )


@router.get("")
async def agent_config_page(request: Request, user: Viewing) -> HTMLResponse:
    return await _page(request)


def _number(text: str, field: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InvalidInput(f"{what}: {text!r} is not a number", field=field) from None


@router.post("/set")
async def set_entry(
    request: Request,
    user: Changing,
    collection: Text = "",
    # The form field keeps its short name, "tri" (the page's HTML id), like its neighbours.
    task_request_interval_min: Annotated[str, Form(alias="tri")] = "",
    ssi: Text = "",
    inv: Text = "",
    out: Text = "",
) -> Response:
    user.require(Role.ADMIN)
    form = {
        "collection": collection,
        "tri": task_request_interval_min,
        "ssi": ssi,
        "inv": inv,
        "out": out,
    }
    try:
        entry: dict[str, Any] = {
            "collection": collection,
            "task_request_interval_min": _number(
                task_request_interval_min, "tri", "Task Request Interval"
            ),
            "send_status_interval_s": _number(ssi, "ssi", "Send Status Interval"),
        }
        async with ns_state(request).session() as session:
            draft = await drafts.draft_agent_config(session)
            kept = [e for e in draft.entries if e.collection == collection]
            if inv.strip():
                entry["inventory_interval_h"] = _number(inv, "inv", "Inventory interval")
            elif kept:  # (left empty, e.g. by the R7 advice's button: the entry's own)
                entry["inventory_interval_h"] = kept[0].inventory_interval_h
            if out.strip():  # output kept per instance, KiB (docs/work-model.md, "Output")
                entry["output_limit_kib"] = _number(out, "out", "Output kept")
            elif kept:  # left empty: the entry's own
                entry["output_limit_kib"] = kept[0].output_limit_kib
            await drafts.set_entry(session, KIND, entry, None, user.name)
    except TaskfleetError as exc:
        # ns.drafts names the JSON keys; the form's fields are shorter.
        exc.field = {
            "task_request_interval_min": "tri",
            "send_status_interval_s": "ssi",
            "inventory_interval_h": "inv",
            "output_limit_kib": "out",
        }.get(exc.field or "", exc.field)
        return await _page(request, form, exc)
    return RedirectResponse(HERE, status_code=303)


@router.post("/move")
async def move(
    request: Request, user: Changing, collection: Text, direction: Text
) -> RedirectResponse:
    user.require(Role.ADMIN)
    async with ns_state(request).session() as session:
        await drafts.move_entry(session, KIND, collection, direction, user.name)
    return RedirectResponse(HERE, status_code=303)


@router.post("/remove")
async def remove(request: Request, user: Changing, collection: Text) -> RedirectResponse:
    user.require(Role.ADMIN)
    async with ns_state(request).session() as session:
        with contextlib.suppress(NotFound):  # gone already (another tab): nothing to do
            await drafts.remove_entry(session, KIND, collection, user.name)
    return RedirectResponse(HERE, status_code=303)


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
