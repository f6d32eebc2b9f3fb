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


def _path(err: Any) -> str:
    """Where a pydantic error points, as ``events.3.output``; FastAPI's own prefix dropped."""
    return ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))


def describe_validation(errors: list[Any]) -> str:
    """pydantic's errors (up to five) as one sentence a person can act on."""
    parts = []
    for err in errors[:5]:
        where = _path(err) or "request body"
        kind = str(err.get("type", ""))
        if kind == "json_invalid":
            return "the request body is not valid JSON; send a JSON object"
        if kind == "missing":
            parts.append(f"{where}: required field is missing")
        else:
            parts.append(f"{where}: {err.get('msg', 'invalid value')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


def field_of(errors: list[Any]) -> str | None:
    """The first error's field as a dotted path (``events.3.output``), if it has one."""
    return next((path for err in errors if (path := _path(err))), None)
