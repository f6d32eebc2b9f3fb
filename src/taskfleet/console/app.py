"""Putting the console on the NS: its routes, static files and error pages."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from taskfleet.console import (
    agent_config,
    audit_log,
    collections,
    computers,
    dashboard,
    policy,
    run_cancel,
    run_steps,
    runs,
    schedules,
    sessions,
    sites,
    task_runs,
    tasks,
    taskservers,
)
from taskfleet.console import files as console_files
from taskfleet.console import jobs as console_jobs
from taskfleet.console.web import HERE, PREFIX, render
from taskfleet.errors import InvalidInput, TaskfleetError, Unauthenticated
from taskfleet.server.errors import error_response
from taskfleet.server.validation import describe_validation, field_of

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def safe_next(target: str) -> str:
    """Only a path inside the console: never another site (an open redirect)."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith(PREFIX + "/"):
        return PREFIX + "/"
    return target


@router.get("/login")
async def login_page(request: Request, next: str = PREFIX + "/") -> HTMLResponse:
    return await render(request, "login.html", {"next": safe_next(next), "name": ""})


@router.post("/login")
async def login(
    request: Request,
    name: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = PREFIX + "/",
) -> Response:
    response = RedirectResponse(safe_next(next), status_code=303)
    try:
        await sessions.log_in(request, response, name.strip(), password)
    except TaskfleetError as exc:
        # The name stays in the form; the password never comes back.
        context = {"next": safe_next(next), "name": name, "error": exc.message}
        return await render(request, "login.html", context, status_code=exc.status_code)
    return response


@router.post("/logout")
async def logout(request: Request, _: sessions.Changing) -> Response:
    response = RedirectResponse(PREFIX + "/login", status_code=303)
    await sessions.log_out(request, response)
    return response


def _is_console(request: Request) -> bool:
    return request.url.path == PREFIX or request.url.path.startswith(PREFIX + "/")


async def _console_error(request: Request, exc: TaskfleetError) -> Response:
    if not _is_console(request):
        return error_response(exc.status_code, exc.code, exc.message, exc.field)
    htmx = request.headers.get("hx-request") == "true"
    if isinstance(exc, Unauthenticated):
        # After logging in again, come back to the page (a POST's own URL is no page).
        back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method != "GET":
            referer = urlsplit(request.headers.get("referer", ""))
            back = referer.path if referer.netloc == request.url.netloc else PREFIX + "/"
        target = f"{PREFIX}/login?next={quote(safe_next(back))}"
        if htmx:
            return Response(status_code=204, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)
    if htmx:
        # Shown in the page's message area; the rest of the page (and any typing) stays.
        response = await render(
            request, "_message.html", {"error": exc.message}, status_code=exc.status_code
        )
        response.headers.update({"HX-Retarget": "#message", "HX-Reswap": "innerHTML"})
        return response
    return await render(
        request, "error.html", {"error": exc.message, "status": exc.status_code},
        status_code=exc.status_code,
    )  # fmt: skip


async def _console_validation(request: Request, exc: RequestValidationError) -> Response:
    errors = list(exc.errors())
    if not _is_console(request):  # the API's answer (server.errors), field named
        return error_response(400, "invalid_input", describe_validation(errors), field_of(errors))
    return await _console_error(request, InvalidInput(describe_validation(errors)))


def _as_page(handler: Any) -> Any:
    """Wrap one of the API's error handlers: on console paths, its JSON becomes a page."""

    async def wrapped(request: Request, exc: Exception) -> Response:
        response: Response = await handler(request, exc)
        if not _is_console(request) or response.media_type != "application/json":
            return response
        body = json.loads(bytes(response.body))
        message = str(body.get("message", "something went wrong"))
        if response.status_code == 404 and body.get("error") == "not_found":
            message = "there is no such page in the console"
        error = TaskfleetError(message)
        error.status_code = response.status_code
        return await _console_error(request, error)

    return wrapped


def install(app: FastAPI) -> None:
    """Call after ``server.errors.install``: the console wraps the API's error handlers."""
    for kind, handler in list(app.exception_handlers.items()):
        if kind not in (TaskfleetError, RequestValidationError):
            app.add_exception_handler(kind, _as_page(handler))
    app.include_router(router)
    app.include_router(dashboard.router)
    app.include_router(taskservers.router)
    app.include_router(computers.router)
    app.include_router(tasks.router)
    app.include_router(task_runs.router)
    app.include_router(console_jobs.router)
    app.include_router(runs.router)
    app.include_router(run_cancel.router)  # POST /console/runs/{id}/cancel
    app.include_router(run_steps.router)  # GET /console/runs/{id}/steps: a job's steps
    app.include_router(schedules.router)
    app.include_router(policy.router)
    app.include_router(agent_config.router)
    app.include_router(collections.router)
    app.include_router(sites.router)
    app.include_router(audit_log.router)
    app.include_router(console_files.router)
    app.mount(PREFIX + "/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.add_exception_handler(TaskfleetError, _console_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _console_validation)  # type: ignore[arg-type]

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(PREFIX + "/", status_code=307)
