"""One decoder of error replies, for the nodes, the admin CLI and the test fleet alike."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from taskfleet.errors import Busy, InvalidInput, NotFound, TaskfleetError, Unavailable
from taskfleet.protocol.calls import call, error_from_reply, error_of

URL = "http://ns.example:8400/api/tasks"


def _reply(
    status: int,
    *,
    json: object = None,
    text: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    request = httpx.Request("POST", URL)
    return httpx.Response(status, json=json, text=text, headers=headers, request=request)


def test_a_taskfleet_reply_becomes_its_class_with_message_and_field() -> None:
    # Given the reply a taskfleet server sends for bad input
    reply = _reply(400, json={"error": "invalid_input", "message": "too long", "field": "name"})

    # When it is decoded
    error = error_of(reply)

    # Then it is the error the server raised, with the field at fault
    assert type(error) is InvalidInput
    assert error.message == "too long" and error.field == "name"
    assert error.retry_after_s is None


def test_busy_says_when_to_come_back() -> None:
    # Given a 503 Busy with Retry-After in seconds
    reply = _reply(503, json={"error": "busy", "message": "full"}, headers={"Retry-After": "7"})

    # When it is decoded, Then the client knows to wait 7 s
    error = error_of(reply)
    assert type(error) is Busy and error.retry_after_s == 7.0


@pytest.mark.parametrize(("status", "kind"), [(502, Unavailable), (404, TaskfleetError)])
def test_a_reply_from_something_else_keeps_its_status_and_text(
    status: int, kind: type[TaskfleetError]
) -> None:
    # Given an error page from a proxy in front of the server
    reply = _reply(status, text="<html>Bad Gateway</html>")

    # When it is decoded
    error = error_of(reply)

    # Then it names the URL, the status and the start of the text; a 5xx may pass
    assert type(error) is kind
    assert error.message == f"{URL} answered {status}: <html>Bad Gateway</html>"
    assert error.field is None


def test_any_http_client_decodes_the_same_way() -> None:
    # Given the same reply as raw bytes (the simulator's aiohttp agents)
    error = error_from_reply(404, b'{"error": "not_found", "message": "no task \'x\'"}', where=URL)

    # Then it decodes as httpx's does
    assert type(error) is NotFound and error.message == "no task 'x'"


def test_call_raises_the_decoded_error() -> None:
    # Given a server that refuses
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": "not_found", "message": "gone"})

    async def go() -> None:
        async with httpx.AsyncClient(
            base_url="http://ns", transport=httpx.MockTransport(refuse)
        ) as client:
            await call(client, "GET", "/api/x")

    # When a node calls it, Then it gets NotFound with the server's message
    with pytest.raises(NotFound, match="gone"):
        asyncio.run(go())
