"""Schedules (list, create, pause, resume, remove) and collections' maintenance windows.

Forms call the same services as the REST API (``ns.schedules``, ``collection_windows.set_windows``).
A form with a mistake comes back with the message next to the field at fault and
everything typed still in it.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from taskfleet.console.sessions import Changing, Viewing
from taskfleet.console.web import PREFIX, render
from taskfleet.errors import InvalidInput, TaskfleetError
from taskfleet.ns import collections as collections_
from taskfleet.ns import expiry, schedules, tasks
from taskfleet.ns.collection_windows import set_windows, windows_view
from taskfleet.ns.state import ns_state
from taskfleet.ns.users import Role

router = APIRouter(prefix=PREFIX, include_in_schema=False)
Text = Annotated[str, Form()]
FIELDS = (
    "task", "computers", "exclude", "when", "at", "cron", "timezone", "live",
    "ignore_windows", "min_wait_s", "max_wait_s", "min_count", "min_share", "expires_in",
)  # fmt: skip


def names(text: str) -> list[str]:
    """Comma-separated names as the forms' text fields take them."""
    return [n.strip() for n in text.split(",") if n.strip()]


def _number(text: str, field: str, kind: type[float] | type[int] = float) -> float | int | None:
    if not text.strip():
        return None
    try:
        return kind(text.strip())
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise InvalidInput(f"{text!r} is not {what}", field=field) from None


def options_of(form: dict[str, str]) -> dict[str, Any]:
    """Further run settings: each run's expiry (90m, 2h, 3d...; empty: 7 days), checked
    by ns.expiry as the API checks ``expires_in_s``."""
    text = form.get("expires_in", "").strip()
    if not text:
        return {}
    seconds = expiry.duration(text, "expires_in")
    expiry.expires_at(time.time(), seconds, field_="expires_in")  # counted from each run's start
    return {"expires_in_s": seconds}


def requirements_of(form: dict[str, str]) -> dict[str, Any]:
    found = {
        "min_wait_s": _number(form.get("min_wait_s", ""), "min_wait_s"),
        "max_wait_s": _number(form.get("max_wait_s", ""), "max_wait_s"),
        "min_count": _number(form.get("min_count", ""), "min_count", int),
        "min_share": _number(form.get("min_share", ""), "min_share"),
    }
    return {k: v for k, v in found.items() if v is not None}


def timing_of(form: dict[str, Any]) -> tuple[dt.datetime | None, str | None, str]:
    """(at, cron, time zone) from the When fields, for ``schedules.create`` to check: it
    refuses a past time, a cron that does not parse and an unknown zone, each by field."""
    timezone = str(form.get("timezone", "")).strip() or "UTC"
    if form.get("when") == "cron":
        return None, str(form.get("cron", "")).strip(), timezone
    text = str(form.get("at", "")).strip()
    try:
        return dt.datetime.fromisoformat(text), None, timezone
    except ValueError:
        shown = f"{text!r} is not" if text else "give"
        raise InvalidInput(f"{shown} a date and time, e.g. 2026-11-28T22:00", field="at") from None


async def _page(
    request: Request, form: dict[str, Any] | None = None, error: TaskfleetError | None = None
) -> HTMLResponse:
    async with ns_state(request).session() as session:
        rows = await schedules.all_schedules(session)
        task_names = await tasks.names(session)
        collections = await collections_.names(session)
    field = (error.field or "").removeprefix("requirements.") if error else ""
    saved = request.query_params.get("saved", "")
    just_added = [s for s, _ in rows if str(s.id) == saved]
    context = {
        "saved": just_added[0] if just_added else None,
        "saved_next": schedules.first_fire_text(just_added[0]) if just_added else "",
        "schedules": rows,
        "tasks": task_names,
        "collections": collections,
        "form": form or {"when": "at", "timezone": "UTC", "targets": []},
        "field_errors": {field: error.message} if error and field else {},
        "error": error.message if error and not field else "",
    }
    status = error.status_code if error else 200
    return await render(request, "schedules.html", context, status_code=status, page="schedules")


@router.get("/schedules")
async def schedule_list(request: Request, user: Viewing) -> HTMLResponse:
    return await _page(request)


@router.post("/schedules")
async def add_schedule(request: Request, user: Changing) -> Response:
    user.require(Role.OPERATOR)
    raw = await request.form()
    form: dict[str, Any] = {k: str(raw.get(k, "")) for k in FIELDS}
    form["targets"] = [str(t) for t in raw.getlist("targets") if t]
    try:
        targets = form["targets"] + names(form["computers"])
        plan = schedules.Plan(
            form["task"], targets, names(form["exclude"]), {}, form["live"] == "on",
            form["ignore_windows"] == "on", requirements_of(form), options_of(form),
        )  # fmt: skip
        at, cron, timezone = timing_of(form)
        async with ns_state(request).session() as session:
            made = await schedules.create(session, plan, user.name, at, cron, timezone)
            made_id = made.id
    except TaskfleetError as exc:
        return await _page(request, form, exc)
    return RedirectResponse(f"{PREFIX}/schedules?saved={made_id}", status_code=303)


@router.post("/schedules/{schedule_id}/{action}")
async def change_schedule(
    request: Request, schedule_id: int, action: str, user: Changing
) -> Response:
    user.require(Role.OPERATOR)
    async with ns_state(request).session() as session:
        if action in ("pause", "resume"):
            await schedules.set_paused(session, schedule_id, action == "pause", user.name)
        elif action == "remove":
            await schedules.remove(session, schedule_id, user.name)
        else:
            raise InvalidInput(f"{action!r}: a schedule is paused, resumed or removed")
    return RedirectResponse(f"{PREFIX}/schedules", status_code=303)


# --- maintenance windows ------------------------------------------------------------


async def _windows_page(
    request: Request, key: str, typed: str | None = None, error: TaskfleetError | None = None
) -> HTMLResponse:
    async with ns_state(request).session() as session:
        collection = await collections_.find(session, key)
        shown = await windows_view(session, collection)
    context = {
        "c": collection,
        "shown": shown,
        "typed": "\n".join(shown.windows) if typed is None else typed,
        "error": error.message if error else "",
    }
    status = error.status_code if error else 200
    return await render(request, "windows.html", context, status_code=status, page="collections")


@router.get("/collections/{key}/windows")
async def windows_page(request: Request, key: str, user: Viewing) -> HTMLResponse:
    return await _windows_page(request, key)


@router.post("/collections/{key}/windows")
async def save_windows(request: Request, key: str, user: Changing, windows: Text = "") -> Response:
    user.require(Role.ADMIN)
    try:
        async with ns_state(request).session() as session:
            collection = await collections_.find(session, key)
            lines = [line.strip() for line in windows.splitlines() if line.strip()]
            await set_windows(session, collection, lines, user.name)
    except TaskfleetError as exc:
        return await _windows_page(request, key, windows, exc)
    return RedirectResponse(
        f"{PREFIX}/collections/{collection.id}/windows?saved=1", status_code=303
    )
