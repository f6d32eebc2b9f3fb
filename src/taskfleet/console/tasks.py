"""Tasks: create and edit run-script tasks (admin), and Run now on targets (operator).

A form with a mistake comes back with the message next to the field at fault
and everything the user typed still in it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from taskfleet.console import task_params
from taskfleet.console.sessions import Changing, Viewing
from taskfleet.console.web import PREFIX, render
from taskfleet.errors import InvalidInput, TaskfleetError
from taskfleet.ns import collections, parameters, runs, task_retries, tasks
from taskfleet.ns.state import ns_state
from taskfleet.ns.users import Role
from taskfleet.protocol.messages import INTERPRETERS, TaskType

router = APIRouter(prefix=PREFIX + "/tasks", include_in_schema=False)
Text = Annotated[str, Form()]


def _form(
    name: str = "",
    script: str = "",
    interpreter: str = "sh",
    timeout_s: str = "600",
    retries: str = "0",
    retry_backoff_s: str = "10",
) -> dict[str, str]:
    return {"name": name, "script": script, "interpreter": interpreter, "timeout_s": timeout_s,
            "retries": retries, "retry_backoff_s": retry_backoff_s}  # fmt: skip


def _seconds(text: str, field: str = "timeout_s") -> float:
    try:
        return float(text)
    except ValueError:
        raise InvalidInput(f"{text!r} is not a number of seconds", field=field) from None


def _retries(form: dict[str, str]) -> tuple[int, float]:
    """The task's retries and back-off as typed, for ns.task_retries to check and apply
    as the API does."""
    try:
        retries = int(form["retries"].strip() or "0")
    except ValueError:
        raise InvalidInput(f"{form['retries']!r} is not a whole number", field="retries") from None
    backoff = _seconds(form["retry_backoff_s"].strip() or "10", "retry_backoff_s")
    return retries, backoff


async def _list(request: Request, status_code: int = 200, **extra: Any) -> HTMLResponse:
    async with ns_state(request).session() as session:
        rows = await tasks.listed(session)
        targets = await collections.names(session)
    context = {"tasks": rows, "collections": targets, **extra}
    return await render(request, "tasks.html", context, status_code=status_code, page="tasks")


async def _editor(
    request: Request,
    form: dict[str, str],
    task_id: int | None,
    error: TaskfleetError | None = None,
    options: dict[str, Any] | None = None,  # run-script options and parameters (task_params)
) -> HTMLResponse:
    context = {
        "form": form,
        "options": options or task_params.form_from_params({}),
        "parameter_types": parameters.TYPES,
        "task_id": task_id,
        "interpreters": INTERPRETERS,
        "field_errors": {error.field: error.message} if error and error.field else {},
        "error": error.message if error and not error.field else "",
    }
    status = error.status_code if error else 200
    return await render(request, "task_form.html", context, status_code=status, page="tasks")


@router.get("")
async def task_list(request: Request, user: Viewing) -> HTMLResponse:
    return await _list(request)


@router.get("/new")
async def new_task(request: Request, user: Viewing) -> HTMLResponse:
    user.require(Role.ADMIN)
    return await _editor(request, _form(), None)


@router.post("/new")
async def create_task(
    request: Request,
    user: Changing,
    name: Text = "",
    script: Text = "",
    interpreter: Text = "sh",
    timeout_s: Text = "600",
    retries: Text = "0",
    retry_backoff_s: Text = "10",
) -> Response:
    user.require(Role.ADMIN)
    form = _form(name, script, interpreter, timeout_s, retries, retry_backoff_s)
    options = task_params.form_from_fields(await request.form())
    state = ns_state(request)
    try:
        async with state.session() as session:
            params = {"script": script, "interpreter": interpreter}
            params |= task_params.params_from_form(options)
            task = await tasks.create(
                session,
                name,
                TaskType.RUN_SCRIPT,
                params,
                _seconds(timeout_s),
                user.name,
                box=state.secrets,
            )
            task_retries.apply(task, *_retries(form))
    except TaskfleetError as exc:
        return await _editor(request, form, None, exc, options)
    return RedirectResponse(f"{PREFIX}/tasks?saved={task.id}", status_code=303)


@router.get("/{key}/edit")
async def edit_task(request: Request, key: str, user: Viewing) -> HTMLResponse:
    user.require(Role.ADMIN)
    async with ns_state(request).session() as session:
        task = await tasks.find(session, key)
    form = _form(
        task.name,
        task.params.get("script", ""),
        task.params.get("interpreter", "sh"),
        f"{task.timeout_s:g}",
        str(task.retries),
        f"{task.retry_backoff_s:g}",
    )
    return await _editor(request, form, task.id, None, task_params.form_from_params(task.params))


@router.post("/{key}/edit")
async def save_task(
    request: Request,
    key: str,
    user: Changing,
    name: Text = "",
    script: Text = "",
    interpreter: Text = "sh",
    timeout_s: Text = "600",
    retries: Text = "0",
    retry_backoff_s: Text = "10",
) -> Response:
    user.require(Role.ADMIN)
    form = _form(name, script, interpreter, timeout_s, retries, retry_backoff_s)
    options = task_params.form_from_fields(await request.form())
    task_id: int | None = None
    state = ns_state(request)
    try:
        async with state.session() as session:
            task = await tasks.find(session, key)
            task_id = task.id
            params = {"script": script, "interpreter": interpreter}
            params |= task_params.params_from_form(options)
            seconds = _seconds(timeout_s)
            await tasks.update(session, task, name, params, seconds, user.name, box=state.secrets)
            task_retries.apply(task, *_retries(form))
    except TaskfleetError as exc:
        return await _editor(request, form, task_id, exc, options)
    return RedirectResponse(f"{PREFIX}/tasks?saved={task_id}", status_code=303)


@router.post("/{key}/run")
async def run_now(
    request: Request,
    key: str,
    user: Changing,
    targets: Annotated[list[str], Form()] = [],  # noqa: B006
    computers: Text = "",
    exclude: Text = "",
) -> Response:
    user.require(Role.OPERATOR)
    chosen = [t for t in targets if t] + [c.strip() for c in computers.split(",") if c.strip()]
    left_out = [c.strip() for c in exclude.split(",") if c.strip()]  # ns.targets
    state = ns_state(request)
    try:
        async with state.session() as session:
            run = await runs.start_run(
                state, session, key, chosen, True, user.name, exclude=left_out
            )
    except TaskfleetError as exc:
        return await _list(
            request,
            status_code=exc.status_code,
            run_error=exc.message,
            run_task=key,
            run_targets=chosen,
            run_computers=computers,
            run_exclude=exclude,
        )
    return RedirectResponse(f"{PREFIX}/runs/{run.id}", status_code=303)
