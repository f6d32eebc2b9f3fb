"""Validate a message where it enters, outside FastAPI's request handling (R12).

The hot endpoints (agents' status on a task server, relayed status on the NS) read
their body themselves; this is how they turn it into a checked message, or into an
``InvalidInput`` whose message and ``field`` name what is wrong.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from taskfleet.errors import InvalidInput
from taskfleet.server.errors import describe_validation

T = TypeVar("T")


def parse_json(adapter: TypeAdapter[T], body: bytes) -> T:
    """``body`` (JSON) as the adapter's type, or InvalidInput naming the field at fault.

    pydantic's JSON parser refuses a lone surrogate escape (``"\\ud800"``) as invalid
    JSON without saying where; the standard parser takes it, so on that path alone the
    body is parsed again and checked as Python data, which names the field.
    """
    try:
        return adapter.validate_json(body)
    except ValidationError as exc:
        errors = list(exc.errors())
        if not any(e["type"] == "json_invalid" for e in errors):
            raise invalid(errors) from None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise InvalidInput("the request body is not valid JSON; send a JSON object") from None
    return check(adapter, data)


def check(adapter: TypeAdapter[T], data: Any) -> T:
    """``data`` (parsed JSON) as the adapter's type, or InvalidInput naming the field."""
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise invalid(list(exc.errors())) from None


def invalid(errors: list[Any]) -> InvalidInput:
    return InvalidInput(describe_validation(errors), field=field_of(errors))


def field_of(errors: list[Any]) -> str | None:
    """The first error's field as a dotted path (``events.3.output``), if it has one."""
    for err in errors:
        path = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        if path:
            return ".".join(path)
    return None
