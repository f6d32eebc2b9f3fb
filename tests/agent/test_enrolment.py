"""The agent branches on the error's type, not its text, when the NS refuses it: a
credential it no longer knows means enrolling again; a refused enrolment token
(TokenRefused) means stopping, since only a new token helps.

Unit tests: the real ``NsLink``; only the network is a double (``httpx.MockTransport``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from taskfleet.agent import ns_link
from taskfleet.agent.clients import Retired
from taskfleet.agent.ns_link import NsLink
from taskfleet.agent.options import AgentOptions
from taskfleet.errors import TokenRefused, Unauthenticated

CREDENTIAL = "tf1.agent.7.s3cret"
Handler = Callable[[httpx.Request], httpx.Response]
ASSIGNMENT = {
    "url": "http://ts1.test",
    "task_server_id": 1,
    "task_server_name": "ts1",
    "step": "policy",
    "reason": "first available on the list",
    "settings": {},
}


def error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": code, "message": message})


@pytest.fixture
async def links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[[Handler, str], NsLink]]:
    """An agent enrolled once (its credential on disk), with ``token`` for enrolling again."""
    monkeypatch.setattr(ns_link, "jittered", lambda seconds: 0.0)
    made: list[NsLink] = []
    retired = Retired()

    def make(handler: Handler, token: str) -> NsLink:
        state = tmp_path / "state"
        state.mkdir(exist_ok=True)
        (state / "identity.json").write_text(json.dumps({"credential": CREDENTIAL}))
        options = AgentOptions(
            ns_url="http://ns.test", state_dir=state, insecure_http=True, token=token
        )
        made.append(NsLink(options, retired, httpx.MockTransport(handler)))
        return made[-1]

    yield make
    retired.cancel()
    for link in made:
        await link.client.aclose()


def forgetful_ns(enrol_reply: httpx.Response, asked: list[str]) -> Handler:
    """An NS that no longer knows the agent's credential and answers enrolment so."""

    def handle(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        if request.url.path == "/api/agent/assignment":
            # The text mentions an enrolment token on purpose: the agent must not read it.
            return error(401, "unauthenticated", "agent credential (or enrolment token) unknown")
        assert request.url.path == "/api/agent/enrol", request.url.path
        return enrol_reply

    return handle


async def test_a_refused_token_stops_the_agent_whatever_the_text(
    links: Callable[[Handler, str], NsLink],
) -> None:
    # Given an NS that forgets the agent's credential and refuses its token, in words
    # that do not say "enrolment token"
    asked: list[str] = []
    refused = error(401, "token_refused", "token 3 is used up; create another")
    link = links(forgetful_ns(refused, asked), "the-token")
    # When the agent asks for a task server
    with pytest.raises(TokenRefused, match="is used up"):
        await link.assignment(None, "")
    # Then it tried to enrol again once, and stopped at the refusal
    assert asked == ["/api/agent/assignment", "/api/agent/enrol"]


async def test_an_unknown_credential_makes_the_agent_enrol_again(
    links: Callable[[Handler, str], NsLink],
) -> None:
    # Given an NS that forgets the agent's credential (a 401 whose text names an
    # enrolment token, which the agent must not read), and then enrols it again
    renewed = "tf1.agent.7.n3w"
    asked: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        if request.url.path == "/api/agent/enrol":
            return httpx.Response(200, json={"computer_id": 7, "credential": renewed})
        if request.headers["authorization"] == f"Bearer {renewed}":
            return httpx.Response(200, json=ASSIGNMENT)
        return error(401, "unauthenticated", "agent credential (or enrolment token) unknown")

    link = links(handle, "the-token")
    # When the agent asks for a task server
    got = await link.assignment(None, "")
    # Then it enrolled again and asked with its new credential
    assert asked == ["/api/agent/assignment", "/api/agent/enrol", "/api/agent/assignment"]
    assert got.task_server_name == "ts1"


async def test_without_a_token_an_unknown_credential_is_the_end(
    links: Callable[[Handler, str], NsLink],
) -> None:
    # Given an agent with no token to enrol again with
    asked: list[str] = []
    link = links(forgetful_ns(error(500, "internal", "unused"), asked), "")
    # When the NS does not know its credential, it says so and stops
    with pytest.raises(Unauthenticated) as raised:
        await link.assignment(None, "")
    assert type(raised.value) is Unauthenticated
    assert asked == ["/api/agent/assignment"]
