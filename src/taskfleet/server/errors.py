"""The one mapping from errors to HTTP responses, for the NS and the task server.

Every response error body is ``{"error": code, "message": text}``; no
traceback reaches a client. Database errors are the NS's alone (``ns.database_errors``):
a task server never loads SQLAlchemy.
"""

from __future__ import annotations

import json
import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from taskfleet.errors import TaskfleetError
from taskfleet.server.validation import describe_validation, field_of

log = logging.getLogger("taskfleet.server")


def error_response(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    body = {"error": code, "message": message}
    if field:
        body["field"] = field  # the input at fault, for forms and scripts
    return JSONResponse(body, status_code=status)


def retry_after(response: Response, seconds: float) -> None:
    """Tell the client when to come back, and close the connection: a client told to
    wait need not hold a connection (an open file here) meanwhile."""
    response.headers["Retry-After"] = str(max(1, math.ceil(seconds)))
    response.headers["Connection"] = "close"


def allowed_methods(request: Request) -> str:
    """Every method some route takes at this path (``Allow`` of a 405): Starlette's own
    405 names only the methods of the first route whose path matched."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.router.routes):
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE and route.methods:
            methods |= route.methods
    return ", ".join(sorted(methods))


async def unexpected(request: Request, exc: Exception) -> JSONResponse:
    """500, the details in the log only: no traceback reaches a client."""
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(
        500, "internal", "internal error; the server log has the details, nothing was changed"
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(TaskfleetError)
    async def _domain(_request: Request, exc: TaskfleetError) -> JSONResponse:
        response = error_response(exc.status_code, exc.code, exc.message, exc.field)
        if exc.retry_after_s is not None:
            retry_after(response, exc.retry_after_s)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # 400, never FastAPI's 422: one status for bad input, API-wide, naming the field.
        errors = list(exc.errors())
        return error_response(400, "invalid_input", describe_validation(errors), field_of(errors))

    @app.exception_handler(json.JSONDecodeError)
    async def _json(_request: Request, _exc: json.JSONDecodeError) -> JSONResponse:
        return error_response(400, "invalid_input", "the request body is not valid JSON")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = str(exc.detail)
        headers = dict(exc.headers or {})
        if exc.status_code == 404:
            message = "no such endpoint; see /docs for the API"
        elif exc.status_code == 405:
            headers["Allow"] = allowed_methods(request)
            message = f"{request.method} is not allowed here; use {headers['Allow']}"
        response = error_response(exc.status_code, code, message)
        response.headers.update(headers)
        return response

    @app.exception_handler(OverflowError)
    async def _overflow(_request: Request, _exc: OverflowError) -> JSONResponse:
        return error_response(400, "invalid_input", "a number is out of range; nothing was changed")

    app.add_exception_handler(Exception, unexpected)
