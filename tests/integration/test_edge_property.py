"""R12, property-based: whatever a node or an admin sends, the answer is 2xx or 4xx, never
5xx, and the status relay keeps draining; on SQLite and PostgreSQL, real processes.

Hypothesis generates status events (to a task server, and to the NS in its own agent
role) and API bodies (names of collections, sites, tasks, tokens, runs; enrolment facts;
task-server registration) holding arbitrary Unicode (NUL and lone surrogates included),
floats (NaN and the infinities included) and integers of any size. Examples are bounded
so that each store's run stays under a minute.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskfleet.cli.launcher import wait_until
from taskfleet.protocol import pki
from tests.fleet import Fleet
from tests.integration.test_poisoned_status import (
    RawAgent,
    enrol,
    given_two_agents_with_work_on_one_task_server,
    outputs_when,
)

# Bad input meets each store's own column types and limits (NUL, integer sizes): both run it.
pytestmark = pytest.mark.both_stores

# Any code point, NUL and lone surrogates included (hypothesis leaves surrogates out unless
# told), and the values that have broken stores before.
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=30) | st.sampled_from(
    ["", "\x00", "a\x00b", "\ud800", "x\udfffy", "x" * 300, "Succeeded", "../a/b", "All Computers"]
)
any_int = st.integers() | st.sampled_from(
    [0, -1, 2**31 - 1, 2**31, -(2**31) - 1, 2**63, -(2**63) - 1, 10**40]
)
any_float = st.floats() | st.sampled_from([1e300, -1e300, 1e-320, 2e9])
any_scalar = st.none() | st.booleans() | any_int | any_float | any_text


def mostly(
    valid: st.SearchStrategy[Any], odd: st.SearchStrategy[Any], weight: int = 6
) -> st.SearchStrategy[Any]:
    """A valid value ``weight`` times for one odd one: whole bodies are valid often enough
    to reach the database, and every field is odd in some."""
    # (st.one_of would count a repeated strategy once)
    return st.integers(0, weight).flatmap(lambda n: odd if n == 0 else valid)


names = st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True)
STATES = ["Received", "Running", "Succeeded", "Failed", "TimedOut", "Canceled", "Expired"]
EXAMPLES = 30  # per generated kind of request


def facts() -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(
        {
            "name": mostly(names, any_text),
            "hardware_id": mostly(st.uuids().map(str), any_text),
        },
        optional={
            "addresses": st.lists(mostly(st.just("10.1.2.3/24"), any_text), max_size=3),
            "os": mostly(st.just("Linux"), any_text),
            "agent_version": mostly(st.just("1.0"), any_text),
            "interpreters": st.lists(mostly(st.just("sh"), any_text), max_size=3),
            "facts": st.dictionaries(names, mostly(names, any_text | any_scalar), max_size=3),
        },
    )


def status_bodies(agent: RawAgent) -> st.SearchStrategy[Any]:
    event = st.fixed_dictionaries(
        {
            "id": mostly(st.uuids().map(lambda u: u.hex), any_text, weight=8),
            "instance_id": mostly(st.just(agent.instance_id), any_int | any_scalar, weight=8),
            "computer_id": mostly(st.just(agent.computer_id), any_int, weight=8),
            "state": mostly(st.sampled_from(STATES), any_text, weight=8),
            "at": mostly(st.floats(0, 2e9), any_float | any_scalar, weight=8),
        },
        optional={
            "return_code": mostly(st.integers(-255, 255), any_int | any_scalar, weight=8),
            "output": mostly(any_text, any_scalar, weight=8),
            "live": mostly(st.booleans(), any_scalar, weight=8),
        },
    )
    return mostly(st.fixed_dictionaries({"events": st.lists(event, max_size=2)}), any_scalar, 8)


def api_bodies(tokens: dict[str, str]) -> dict[str, st.SearchStrategy[Any]]:
    agent_csr = pki.csr_pem(pki.new_key(), "agent")
    ts_csr = pki.csr_pem(pki.new_key(), "taskserver")
    return {
        "POST /api/collections": st.fixed_dictionaries(
            {"name": any_text}, optional={"description": any_text}
        ),
        "POST /api/sites": st.fixed_dictionaries(
            {"name": any_text},
            optional={"subnets": st.lists(mostly(st.just("10.9.0.0/16"), any_text), max_size=2)},
        ),
        "POST /api/tasks": st.fixed_dictionaries(
            {"name": any_text, "script": any_text},
            optional={
                "timeout_s": mostly(st.just(60), any_float | any_int),
                "interpreter": any_text,
            },
        ),
        "POST /api/tokens": st.fixed_dictionaries(
            {"kind": mostly(st.sampled_from(["agent", "taskserver"]), any_text)},
            optional={
                "label": any_text,
                "uses": mostly(st.integers(1, 5), any_int),
                "ttl_s": mostly(st.just(3600.0), any_float),
            },
        ),
        "POST /api/runs": st.fixed_dictionaries(
            {
                "task": mostly(st.just("hello"), any_text),
                "targets": st.lists(mostly(st.just("ns-served"), any_text), min_size=1, max_size=2),
            }
        ),
        "POST /api/agent/enrol": st.fixed_dictionaries(
            {
                "token": mostly(st.just(tokens["agent"]), any_text),
                "facts": facts(),
                "csr": mostly(st.just(agent_csr), any_text),
            },
        ),
        "POST /api/ts/register": st.fixed_dictionaries(
            {
                "token": mostly(st.just(tokens["taskserver"]), any_text),
                "facts": facts(),
                "url": mostly(st.just("https://127.0.0.1:9"), any_text),
                "csr": mostly(st.just(ts_csr), any_text),
            },
            optional={
                "client_limit": mostly(st.integers(1, 5000), any_int),
                "heartbeat_period_s": mostly(st.just(10.0), any_float),
            },
        ),
    }


ANSWERS: Counter[tuple[str, int]] = Counter()  # (what, status code): what was exercised


def check_answer(what: str, body: Any, response: httpx.Response) -> None:
    ANSWERS[what, response.status_code] += 1
    shown = f"{what} {body!r} -> {response.status_code} {response.text[:500]}"
    assert response.status_code < 500, shown
    assert "Traceback" not in response.text, shown
    if response.status_code >= 400:
        assert {"error", "message"} <= set(response.json()), shown


def post(client: httpx.Client, path: str, body: Any, headers: dict[str, str]) -> httpx.Response:
    # As Python writes JSON: NaN and the infinities as bare tokens, surrogates escaped
    content = json.dumps(body).encode()
    return client.post(
        path, content=content, headers={**headers, "Content-Type": "application/json"}
    )


def explore(strategy: st.SearchStrategy[Any], send: Any, examples: int = EXAMPLES) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(body=strategy)
    def check(body: Any) -> None:
        send(body)

    check()


def test_generated_status_and_bodies_never_get_a_5xx_and_the_relay_keeps_draining(
    fleet: Fleet,
) -> None:
    ANSWERS.clear()
    # Given two agents with work on one task server, and an agent the NS serves itself
    given_ = given_two_agents_with_work_on_one_task_server(fleet)
    bad, good, ts = given_.bad, given_.good, given_.ts
    by_ns = enrol(fleet, "ns-served")  # no policy names it, no address: the NS serves it
    tokens = {kind: fleet.token(kind) for kind in ("agent", "taskserver")}
    limits = httpx.Limits(max_keepalive_connections=0)  # a 5xx closes the connection

    with (
        httpx.Client(base_url=ts.url, verify=bad.verify, timeout=30, limits=limits) as to_ts,
        httpx.Client(base_url=fleet.ns_url, verify=by_ns.verify, timeout=30, limits=limits) as ns,
        httpx.Client(base_url=fleet.ns_url, timeout=30, limits=limits) as anyone,
    ):
        # When an agent sends generated status events to its task server
        def to_task_server(body: Any) -> None:
            check_answer("status to ts-a", body, post(to_ts, "/agent/status", body, bad.header))

        explore(status_bodies(bad), to_task_server, examples=2 * EXAMPLES)

        # And an agent the NS serves sends generated status events to the NS
        def to_the_ns(body: Any) -> None:
            reply = post(ns, "/agent/status", body, by_ns.header)
            check_answer("status to the NS", body, reply)

        explore(status_bodies(by_ns), to_the_ns, examples=2 * EXAMPLES)

        # And an admin, agents and task servers send generated API bodies to the NS
        for endpoint, strategy in api_bodies(tokens).items():
            path = endpoint.split(" ")[1]
            # (enrolment and registration need no credential; the rest is the admin's)
            client = (
                anyone if path in ("/api/agent/enrol", "/api/ts/register") else fleet.api.client
            )

            def to_api(
                body: Any, endpoint: str = endpoint, path: str = path, client: httpx.Client = client
            ) -> None:
                check_answer(endpoint, body, post(client, path, body, {}))

            explore(strategy, to_api)

    # Then some of each were taken, the rest refused with a 4xx
    for what in ("status to ts-a", "status to the NS", *api_bodies(tokens)):
        assert sum(n for (w, code), n in ANSWERS.items() if w == what and code < 300), (
            what,
            ANSWERS,
        )
        assert ANSWERS[what, 400] > 0, (what, ANSWERS)

    # And the relay keeps draining: another agent's result behind them all arrives
    with good.client(ts.url) as client:
        event = good.event(id=uuid.uuid4().hex, output="still flowing")
        assert good.send(client, event).status_code == 200
    assert outputs_when(fleet, given_.run_id, "pc-good") == ("Succeeded", "still flowing")
    spool = ts.data_dir / "spool"
    wait_until(lambda: not list(spool.glob("*.json")), 30, "ts-a's spool to empty")
    # And no process logged a traceback
    assert "Traceback" not in fleet.logs(tail=1_000_000)
