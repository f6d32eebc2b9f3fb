"""The run form of one task: targets, the task's parameters, and the interpreter warning.

Each declared parameter gets an input of its type (a secret one a password input,
never prefilled); an "ask at run time" one is required here. As targets are chosen,
htmx asks ``/preview`` how many of them lack the script's interpreter (``ns.preview``)
and shows the warning before the run is started. The tasks page's "Run now" stays
the quick way for tasks without parameters to fill in.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from taskfleet.console import task_params
from taskfleet.console.schedules import requirements_of
from taskfleet.console.sessions import Changing, Viewing
from taskfleet.console.web import PREFIX, render
from taskfleet.errors import InvalidInput, TaskfleetError
from taskfleet.ns import expiry, parameters, preview, runs, tasks
from taskfleet.ns.state import ns_state
from taskfleet.storage.models import Collection

router = APIRouter(prefix=PREFIX + "/tasks", include_in_schema=False)
NEEDS = ("min_wait_s", "max_wait_s", "min_count", "min_share")  # completion requirements


def _chosen(targets: list[str], computers: str) -> list[str]:
    return [t for t in targets if t] + [c.strip() for c in computers.split(",") if c.strip()]


async def _page(
    request: Request,
    key: str,
    given: dict[str, Any] | None = None,
    error: TaskfleetError | None = None,
) -> HTMLResponse:
    given = given or {}
    async with ns_state(request).session() as session:
        task = await tasks.find(session, key)
        collections = (
            await session.scalars(select(Collection.name).order_by(Collection.name))
        ).all()
    declared = [d.shown() for d in parameters.loaded(task.params.get("parameters"))]
    context = {
        "task": task,
        "declared": declared,
        "collections": collections,
        "given": given,
        "error": error.message if error else "",
        # ns.completion names requirements.FIELD; the form's inputs are FIELD
        "error_field": error.field.removeprefix("requirements.") if error and error.field else None,
    }
    status = error.status_code if error else 200
    return await render(request, "run_form.html", context, status_code=status, page="tasks")


@router.get("/{key}/run")
async def run_form(request: Request, key: str, user: Viewing) -> HTMLResponse:
    user.require("operator")
    return await _page(request, key)


@router.get("/{key}/preview")
async def run_preview(
    request: Request,
    key: str,
    user: Viewing,
    targets: Annotated[list[str], Query()] = [],  # noqa: B006
    computers: str = "",
) -> HTMLResponse:
    """The interpreter warning for the targets chosen so far (an htmx fragment)."""
    chosen = _chosen(targets, computers)
    found: preview.RunPreview | None = None
    problem = ""
    if chosen:
        try:
            async with ns_state(request).session() as session:
                found = await preview.preview(session, key, chosen)
        except TaskfleetError as exc:
            problem = exc.message
    context = {"preview": found, "problem": problem}
    return await render(request, "_run_warning.html", context, page="tasks")


@router.post("/{key}/run-with")
async def run_with(request: Request, key: str, user: Changing) -> Response:
    """Start a run from the run form: its targets and parameter values."""
    user.require("operator")
    fields = await request.form()
    targets = [str(t) for t in fields.getlist("targets")]
    computers = str(fields.get("computers", ""))
    values = task_params.run_values(fields)
    report = str(fields.get("report", runs.LIVE))  # live unless buffered is chosen
    expires_in = str(fields.get("expires_in", "")).strip()  # (ns.expiry) empty: 7 days
    given = {"targets": targets, "computers": computers, "values": values, "report": report}
    given["expires_in"] = expires_in
    # Exclusions, the windows override and completion requirements, as the API takes them.
    more = {k: str(fields.get(k, "")) for k in ("exclude", "ignore_windows", *NEEDS)}
    given |= more
    state = ns_state(request)
    try:
        if report not in runs.REPORTS:
            raise InvalidInput("report is 'live' or 'buffered'", field="report")
        live = report == runs.LIVE
        expires_in_s = expiry.duration(expires_in, "expires_in") if expires_in else None
        requirements = requirements_of(more)  # checked by ns.completion
        async with state.session() as session:
            run = await runs.start_run(
                state,
                session,
                key,
                _chosen(targets, computers),
                live,
                user.name,
                params=values,
                expires_in_s=expires_in_s,
                exclude=[n.strip() for n in more["exclude"].split(",") if n.strip()],
                ignore_windows=more["ignore_windows"] == "on",
                requirements=requirements,
            )
    except TaskfleetError as exc:
        # Secret values are not sent back to the browser: typed again after a mistake.
        declared = await _secret_names(request, key)
        given["values"] = {k: v for k, v in values.items() if k not in declared}
        return await _page(request, key, given, exc)
    return RedirectResponse(f"{PREFIX}/runs/{run.id}", status_code=303)


async def _secret_names(request: Request, key: str) -> set[str]:
    async with ns_state(request).session() as session:
        task = await tasks.find(session, key)
    return {d.name for d in parameters.loaded(task.params.get("parameters")) if d.secret}
