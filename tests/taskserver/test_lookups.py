"""Polls with an unknown agent id or a wrong secret cost the NS no round trip each time.

Real NS and task server processes. The NS counts the task server's agent lookups
(``GET /api/ts/agents/{computer_id}``) on its /metrics; the task server remembers the NS's
negative answers (``taskserver.lookups``) and limits lookups per source address.

Over plain HTTP (``--insecure-http``), where such polls cost an attacker least: over TLS
a poll must also present the client certificate of the agent it names (server.peers).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from taskfleet.cli.launcher import wait_until
from taskfleet.protocol.transport import Credential, parse_credential
from taskfleet.taskserver.lookups import NEGATIVE_TTL_S, OVERALL, PER_SOURCE
from tests.fleet import Fleet
from tests.scrape import scrape

LOOKUP = "/api/ts/agents/{computer_id}"


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    """An NS on SQLite over plain HTTP (what is stored does not matter here)."""
    f = Fleet(tmp_path / "fleet", f"sqlite:///{tmp_path / 'ns.db'}", tls=False)
    try:
        f.start_ns()
        yield f
    finally:
        f.stop()


def facts(name: str) -> dict[str, object]:
    return {"name": name, "hardware_id": f"hw-{name}", "addresses": ["10.9.0.1/24"]}


def assign(fleet: Fleet, name: str, credential: Credential) -> str:
    """Ask the NS which task server to use, as the agent does; its name."""
    assigned = httpx.post(
        f"{fleet.ns_url}/api/agent/assignment",
        json={"facts": facts(name)},
        headers=credential.header,
        timeout=30,
    )
    assigned.raise_for_status()
    return str(assigned.json()["task_server_name"])


def enrol(fleet: Fleet, name: str) -> Credential:
    """Enrol and assign one agent through the real agent API."""
    enrolled = httpx.post(
        f"{fleet.ns_url}/api/agent/enrol",
        json={"token": fleet.token("agent"), "facts": facts(name)},
        timeout=30,
    )
    enrolled.raise_for_status()
    credential = parse_credential(enrolled.json()["credential"])
    assert credential is not None
    assign(fleet, name, credential)
    return credential


def lookups(fleet: Fleet) -> float:
    found = scrape(fleet.ns_url, dict(fleet.api.client.headers))
    return found.total("taskfleet_ns_requests_total", method="GET", route=LOOKUP)


def poll(ts: httpx.Client, computer_id: int, secret: str) -> httpx.Response:
    return ts.get("/agent/poll", headers=Credential("agent", computer_id, secret).header)


def statuses(responses: list[httpx.Response]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for response in responses:
        counts[response.status_code] = counts.get(response.status_code, 0) + 1
    return counts


def test_bad_polls_are_refused_from_memory_and_good_ones_still_answered(fleet: Fleet) -> None:
    # Given a task server with one agent assigned to it by policy
    ts = fleet.start_ts("ts-1")
    fleet.apply_policy("Lab", "pc-*", ["ts-1"])
    credential = enrol(fleet, "pc-good")
    computer_id, good = credential.principal, credential.header
    with httpx.Client(base_url=ts.url, timeout=30) as client:
        assert client.get("/agent/poll", headers=good).status_code == 200
        before = lookups(fleet)

        # When one unknown agent id polls 300 times, and the real agent's id 300 times
        # with a wrong secret
        unknown = [poll(client, 999_999, "x" * 32) for _ in range(300)]
        wrong = [poll(client, computer_id, "y" * 32) for _ in range(300)]

        # Then each is refused as the NS would (not assigned here; not recognised), yet
        # the NS was asked about each only once
        assert statuses(unknown) == {409: 300}, unknown[-1].text
        assert unknown[-1].json()["error"] == "not_assigned"
        assert statuses(wrong) == {401: 300}, wrong[-1].text
        assert lookups(fleet) - before == 2
        # And the real agent is still answered from memory
        assert client.get("/agent/poll", headers=good).status_code == 200
        assert lookups(fleet) - before == 2


def test_lookups_are_limited_per_source_with_retry_after(fleet: Fleet) -> None:
    # Given a task server with one agent assigned to it
    ts = fleet.start_ts("ts-1")
    fleet.apply_policy("Lab", "pc-*", ["ts-1"])
    credential = enrol(fleet, "pc-good")
    computer_id = credential.principal
    with httpx.Client(base_url=ts.url, timeout=30) as client:
        assert client.get("/agent/poll", headers=credential.header).status_code == 200
        before = lookups(fleet)

        # When one source sends polls with 200 different unknown ids, then 200 different
        # wrong secrets for the real agent's id (each would need its own NS lookup)
        started = time.monotonic()
        unknown = [poll(client, 500_000 + n, "x" * 32) for n in range(200)]
        wrong = [poll(client, computer_id, f"{n:032d}") for n in range(200)]
        took = time.monotonic() - started

        # Then past the source's burst they are refused 429 with Retry-After, without
        # asking the NS; the NS saw no more lookups than the bucket allows
        allowed = PER_SOURCE.burst + PER_SOURCE.per_s * took
        asked = lookups(fleet) - before
        assert asked <= allowed + 1, (asked, took)
        refused = [r for r in unknown + wrong if r.status_code == 429]
        assert len(refused) >= 400 - allowed - 1
        assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
        assert refused[0].json()["error"] == "too_many_requests"
        assert {r.status_code for r in unknown} <= {409, 429}
        assert {r.status_code for r in wrong} <= {401, 429}

        # And the real agent is still answered: it costs no lookup and no token
        assert client.get("/agent/poll", headers=credential.header).status_code == 200
    # And the whole task server's lookups are bounded too, whatever the sources
    assert OVERALL.burst >= PER_SOURCE.burst


def test_an_agent_refused_as_not_assigned_is_served_once_assigned(fleet: Fleet) -> None:
    # Given an agent the NS serves itself (no policy names the task server yet), which
    # polled the task server and was told it is not assigned there (now remembered)
    ts = fleet.start_ts("ts-1")
    credential = enrol(fleet, "pc-late")
    assert fleet.computer("pc-late")["assign_step"] == "ns-fallback"
    with httpx.Client(base_url=ts.url, timeout=30) as client:
        refused = client.get("/agent/poll", headers=credential.header)
        assert refused.status_code == 409, refused.text

        # When a policy assigns it to the task server and it asks the NS again (refused
        # once more just before: the refusal is fresh)
        fleet.apply_policy("Lab", "pc-*", ["ts-1"])
        assert client.get("/agent/poll", headers=credential.header).status_code == 409
        started = time.monotonic()
        assert assign(fleet, "pc-late", credential) == "ts-1"

        # Then the task server serves it as soon as its agent map is reloaded, well before
        # the remembered refusal would have expired
        wait_until(
            lambda: client.get("/agent/poll", headers=credential.header).status_code == 200,
            NEGATIVE_TTL_S,
            "the newly assigned agent to be served",
        )
        assert time.monotonic() - started < NEGATIVE_TTL_S
