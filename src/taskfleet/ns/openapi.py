"""The NS's OpenAPI document lists the error statuses each operation really returns.

FastAPI documents a 422 for every operation that takes input; taskfleet answers bad
input with 400 (``server.errors``), so the 422s and their schemas are taken out, and
each operation lists, from what it takes:

- 400 when it takes parameters or a body: the message says what to change, and
  ``field`` names the input at fault;
- 401 and 403 when it needs a credential (dependencies from ``ns.auth``): none or
  not recognised; recognised, but of another kind or role, or a task server that is
  not approved (R1);
- 404 when its path names something (an id, or a name, that does not exist);
- 413 when it takes a body (larger than the NS's ``--max-body``);

plus what an operation declares with ``responses=errors(...)``: 409 where it may clash
with what is stored, 404 where its body names something, 401/403 where it checks a
credential itself. Every error has the one body of the error tree (``Error``).

The agents' hot-path endpoints, plain Starlette routes FastAPI cannot describe, are in
the document too: ``ns.agent_openapi`` describes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts

from taskfleet.ns import agent_openapi

AUTH_MODULE = "taskfleet.ns.auth"
DESCRIPTIONS = {
    400: "Bad input: the message says what to change, `field` names the input at fault; "
    "nothing was changed",
    401: "No credential, or one the NS does not recognise",
    403: "The credential may not do this: another kind or role, or a task server that is "
    "not approved",
    404: "Something the request names does not exist",
    409: "The request clashes with what is stored (a name in use, an identity claimed, "
    "several matches for a name); nothing was changed",
    413: "The request body is larger than the NS accepts",
    429: "Too many requests: come back after `Retry-After` seconds",
    503: "Busy or unavailable: come back after `Retry-After` seconds",
}
ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "a code, e.g. invalid_input, not_found"},
        "message": {"type": "string", "description": "what went wrong and what to do"},
        "field": {"type": "string", "description": "the input at fault, when there is one"},
    },
}
UNUSED_SCHEMAS = ("HTTPValidationError", "ValidationError")


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route decorator: error statuses beyond those its inputs imply."""
    return {code: _response(code) for code in codes}


def _response(code: int) -> dict[str, Any]:
    return {
        "description": DESCRIPTIONS[code],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _dependencies(sub)


def implied(route: Any) -> set[int]:
    """The error statuses a route's inputs and credential imply."""
    found = route.dependant
    inputs = [
        *found.path_params,
        *found.query_params,
        *found.header_params,
        *found.body_params,
    ]
    for sub in _dependencies(found):
        inputs += [*sub.path_params, *sub.query_params, *sub.header_params, *sub.body_params]
    codes: set[int] = set()
    if inputs:
        codes.add(400)
    if found.body_params:
        codes.add(413)
    if found.path_params:
        codes.add(404)
    if any(getattr(sub.call, "__module__", "") == AUTH_MODULE for sub in _dependencies(found)):
        codes |= {401, 403}
    return codes


def document_errors(schema: dict[str, Any], routes: Iterable[Any]) -> None:
    """Take 422 out of ``schema`` and add each operation's error statuses, in place."""
    for route in iter_route_contexts(list(routes)):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        operations = schema["paths"].get(route.path_format, {})
        for method in route.methods or ():
            operation = operations.get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for code in sorted(implied(route)):
                responses.setdefault(str(code), _response(code))
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in UNUSED_SCHEMAS:
        components.pop(name, None)
    components["Error"] = ERROR_SCHEMA


def install(app: FastAPI) -> None:
    """Serve the document with its error statuses (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            routes = [*app.routes, *agent_openapi.router.routes]
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=routes,
            )
            document_errors(schema, routes)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
