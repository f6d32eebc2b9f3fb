"""The run form of one task: targets, the task's parameters, and the interpreter warning.

Each declared parameter gets an input of its type (a secret one a password input,
never prefilled); an "ask at run time" one is required here. As targets are chosen,
htmx asks ``/preview`` how many of them lack the script's interpreter (``ns.preview``)
and shows the warning before the run is started. The form itself, and starting or
scheduling the run from it, is ``console.run_form``'s (jobs use it too). The tasks
page's "Run now" stays the quick way for tasks without parameters to fill in.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from taskfleet.console import run_form as form_  # its route below is run_form
from taskfleet.console.schedules import names
from taskfleet.console.sessions import Changing, Viewing
from taskfleet.console.web import PREFIX, render
from taskfleet.errors import TaskfleetError
from taskfleet.ns import parameters, preview, tasks
from taskfleet.ns.state import ns_state
from taskfleet.ns.users import Role

router = APIRouter(prefix=PREFIX + "/tasks", include_in_schema=False)


async def _subject(request: Request, key: str) -> form_.Subject:
    async with ns_state(request).session() as session:
        task = await tasks.find(session, key)
    declared = parameters.loaded(task.params.get("parameters"))
    base, back = f"{PREFIX}/tasks/{task.id}", (f"{PREFIX}/tasks", "Tasks")
    return form_.subject(str(task.id), task.name, declared, base, back, "tasks")


async def _page(request: Request, key: str) -> HTMLResponse:
    return await form_.page(request, await _subject(request, key))


@router.get("/{key}/run")
async def run_form(request: Request, key: str, user: Viewing) -> HTMLResponse:
    user.require(Role.OPERATOR)
    return await _page(request, key)


@router.get("/{key}/preview")
async def run_preview(
    request: Request,
    key: str,
    user: Viewing,
    targets: Annotated[list[str], Query()] = [],  # noqa: B006
    computers: str = "",
    exclude: str = "",
) -> HTMLResponse:
    """The interpreter warning for the targets chosen so far, minus the exclusions the
    run would apply (an htmx fragment)."""
    chosen = form_.chosen(targets, computers)
    left_out = names(exclude)  # as the form sends them
    found: preview.RunPreview | None = None
    problem = ""
    if chosen:
        try:
            async with ns_state(request).session() as session:
                found = await preview.preview(session, key, chosen, left_out)
        except TaskfleetError as exc:
            problem = exc.message
    context = {"preview": found, "problem": problem}
    return await render(request, "_run_warning.html", context, page="tasks")


@router.post("/{key}/run-with")
async def run_with(request: Request, key: str, user: Changing) -> Response:
    """Start a run from the run form, or schedule it (``console.run_form``)."""
    user.require(Role.OPERATOR)
    return await form_.submit(request, await _subject(request, key), user)
