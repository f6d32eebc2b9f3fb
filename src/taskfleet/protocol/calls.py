"""Calling a taskfleet server: JSON in, JSON out, errors back into the one error tree."""

from __future__ import annotations

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
        error = _error(response)
        # Busy (503) says when to come back; seconds only, the form taskfleet servers send.
        retry_after = response.headers.get("retry-after", "")
        if retry_after.isdigit():
            error.retry_after_s = float(retry_after)
        raise error
    if not response.content:
        return None
    return response.json()


def _error(response: httpx.Response) -> TaskfleetError:
    try:
        body = response.json()
        return error_for_code(str(body["error"]), str(body["message"]))
    except (ValueError, KeyError, TypeError):
        text = response.text.strip()[:200] or response.reason_phrase
        if response.status_code >= 500:
            return Unavailable(f"{response.request.url} answered {response.status_code}: {text}")
        return TaskfleetError(f"{response.request.url} answered {response.status_code}: {text}")


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
                raise _error(response)
            async for piece in response.aiter_bytes(1024 * 1024):
                write(piece)
            return response.headers
    except httpx.HTTPError as exc:
        raise Unavailable(
            f"{client.base_url} did not answer: {exc.__class__.__name__} {exc}"
        ) from exc
