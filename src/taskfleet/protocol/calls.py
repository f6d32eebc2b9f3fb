"""Calling a taskfleet server: JSON in, JSON out, errors back into the one error tree."""

from __future__ import annotations

import json as json_text
from collections.abc import Callable
from typing import Any

import httpx

from taskfleet.errors import TaskfleetError, Unavailable, error_for_code


async def call(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    *,
    json: Any = None,
    params: dict[str, Any] | None = None,
    timeout: float | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """Send one request; raise the server's error, or Unavailable when it cannot be reached."""
    extra: dict[str, Any] = {}
    if timeout is not None:
        extra["timeout"] = httpx.Timeout(timeout, connect=5.0)
    try:
        response = await client.request(
            method, path, json=json, params=params, headers=headers, **extra
        )
    except httpx.HTTPError as exc:
        raise Unavailable(
            f"{client.base_url} did not answer: {exc.__class__.__name__} {exc}"
        ) from exc
    if response.status_code >= 400:
        raise error_of(response)
    if not response.content:
        return None
    return response.json()


def error_of(response: httpx.Response) -> TaskfleetError:
    """The error an error reply (4xx, 5xx) stands for, in the one error tree.

    The one decoder of error replies: the services' clients here, the admin CLI
    (``cli.client``) and the test fleet's API read replies through it, the simulator's
    aiohttp agents through ``error_from_reply``.
    """
    return error_from_reply(
        response.status_code,
        response.content,
        where=str(response.request.url),
        retry_after=response.headers.get("retry-after"),
        reason=response.reason_phrase,
    )


def error_from_reply(
    status: int,
    content: bytes,
    *,
    where: str,
    retry_after: str | None = None,
    reason: str = "",
) -> TaskfleetError:
    """``error_of`` for any HTTP client: the reply's status, body, URL and Retry-After.

    A taskfleet server sends ``{"error": code, "message": text, "field": name}``;
    anything else (a proxy's error page) keeps the status and the start of its text.
    """
    try:
        body = json_text.loads(content)
        error = error_for_code(str(body["error"]), str(body["message"]))
        field = body.get("field")
    except (ValueError, KeyError, TypeError, AttributeError):
        text = content[:200].decode("utf-8", "replace").strip() or reason
        what = f"{where} answered {status}: {text}"
        error = Unavailable(what) if status >= 500 else TaskfleetError(what)
        field = None
    error.field = str(field) if field else None
    # Busy (503) says when to come back; seconds only, the form taskfleet servers send.
    if retry_after is not None and retry_after.isdigit():
        error.retry_after_s = float(retry_after)
    return error


async def download(
    client: httpx.AsyncClient,
    path: str,
    write: Callable[[bytes], object],
    *,
    headers: dict[str, str] | None = None,
    timeout: float | None = None,
) -> httpx.Headers:
    """GET ``path`` and hand its body to ``write`` piece by piece, never whole in memory;
    the response's headers. Errors as ``call`` raises them."""
    extra: dict[str, Any] = {}
    if timeout is not None:
        extra["timeout"] = httpx.Timeout(timeout, connect=5.0)
    try:
        async with client.stream("GET", path, headers=headers, **extra) as response:
            if response.status_code >= 400:
                await response.aread()
                raise error_of(response)
            async for piece in response.aiter_bytes(1024 * 1024):
                write(piece)
            return response.headers
    except httpx.HTTPError as exc:
        raise Unavailable(
            f"{client.base_url} did not answer: {exc.__class__.__name__} {exc}"
        ) from exc
