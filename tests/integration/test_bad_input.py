"""Bad input against a real NS and task server (SPEC section 5).

Malformed, oversized or unknown input gets a 4xx with a clear JSON message
``{"error": code, "message": text}`` and changes nothing; no traceback reaches
a client; the servers keep serving.

Each test starts its own NS (and task server), so the request tables run as
subtests inside one test rather than one process start per case.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskfleet.cli.launcher import Proc, wait_until
from taskfleet.protocol.messages import STATUS_BODY_BYTES
from tests.fleet import Fleet

# Hand-made agents (raw enrolment, no certificate) probe something other than TLS,
# which tests/integration/test_tls.py covers: this fleet runs --insecure-http.
# Bad input meets each store's own column types and limits (NUL, integer sizes): both run it.
pytestmark = [pytest.mark.plain_http, pytest.mark.both_stores]


LIMIT = 1024 * 1024  # the default max_body_bytes of the NS and the task server
MALFORMED = b'{"name": '
SNAPSHOT_PATHS = (
    "/api/collections",
    "/api/tasks",
    "/api/documents/policy",
    "/api/documents/agent-config",
)
HUGE = "9" * 20  # a number no database integer column can hold


@dataclass(frozen=True)
class Bad:
    """One bad request and the refusal it should get."""

    id: str
    method: str
    path: str
    status: int
    error: str
    says: tuple[str, ...] = ()  # the message must contain each (case-insensitive)
    json: Any = None  # sent as a JSON body when not None
    raw: bytes | None = None  # sent as is, with a Content-Length
    streamed: bytes | None = None  # sent chunked, without a Content-Length
    auth: str = "admin"  # admin | none | garbage | wrong-secret | agent


def big_task() -> bytes:
    return json.dumps({"name": "big", "script": "x" * (LIMIT + 1)}).encode()


def big_status_batch(computer_id: int) -> bytes:
    # Status endpoints take one event with a whole output (STATUS_BODY_BYTES), not more.
    event = {"id": "e", "instance_id": 1, "computer_id": computer_id, "state": "Running", "at": 1}
    return json.dumps({"events": [{**event, "output": "x" * (STATUS_BODY_BYTES + 1)}]}).encode()


def chunks(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


# fmt: off
NS_CASES = [
    # malformed JSON
    *(
        Bad(f"malformed JSON to {path}", "POST", path, 400, "invalid_input", ("not valid JSON",),
            raw=MALFORMED, auth=auth)
        for path, auth in [("/api/collections", "admin"), ("/api/tasks", "admin"),
                           ("/api/ts/register", "none"), ("/api/agent/enrol", "none")]
    ),
    # wrong types and out-of-range values: the message names the field
    Bad("task name and script of the wrong type", "POST", "/api/tasks", 400, "invalid_input",
        ("name", "script"), json={"name": 5, "script": ["x"]}),
    Bad("run targets as a string, not a list", "POST", "/api/runs", 400, "invalid_input",
        ("targets",), json={"task": "hello", "targets": "Lab"}),
    Bad("task timeout_s 0", "POST", "/api/tasks", 400, "invalid_input", ("timeout",),
        json={"name": "t0", "script": "echo", "timeout_s": 0}),
    *(
        Bad(f"agent-config task_request_interval_min {value!r}", "POST",
            "/api/documents/agent-config/draft/entries", 400, "invalid_input",
            ("task_request_interval_min",),
            json={"entry": {"collection": "Lab", "task_request_interval_min": value}})
        for value in ["fast", -1]
    ),
    # unknown ids and names: the message names the thing and how to list them
    Bad("unknown computer", "GET", "/api/computers/nope", 404, "not_found",
        ("'nope'", "taskfleet computer list")),
    Bad("unknown run", "GET", "/api/runs/999999", 404, "not_found", ("999999", "taskfleet run")),
    Bad("approve an unknown task server", "POST", "/api/taskservers/nope/approve", 404,
        "not_found", ("'nope'", "taskfleet taskserver list")),
    Bad("run an unknown task", "POST", "/api/runs", 404, "not_found",
        ("'nope'", "taskfleet task list"), json={"task": "nope", "targets": ["All Computers"]}),
    Bad("members of an unknown collection", "POST", "/api/collections/999999/members", 404,
        "not_found", ("999999", "taskfleet collection list"), json={"computers": ["x"]}),
    Bad("a collection addressed by name, not id", "GET", "/api/collections/Lab", 400,
        "invalid_input", ("collection_id",)),
    # oversized bodies, declared and streamed
    Bad("oversized task, with Content-Length", "POST", "/api/tasks", 413, "payload_too_large",
        ("larger than",), raw=big_task()),
    Bad("oversized task, streamed without Content-Length", "POST", "/api/tasks", 413,
        "payload_too_large", ("larger than",), streamed=big_task()),
    # missing, garbage and wrong-kind credentials
    Bad("no Authorization", "GET", "/api/collections", 401, "unauthenticated", auth="none"),
    Bad("no Authorization on a change", "POST", "/api/collections", 401, "unauthenticated",
        json={"name": "Sneaky"}, auth="none"),
    Bad("Bearer garbage", "GET", "/api/collections", 401, "unauthenticated", auth="garbage"),
    Bad("admin credential with a wrong secret", "POST", "/api/tasks", 401, "unauthenticated",
        json={"name": "sneaky", "script": "echo"}, auth="wrong-secret"),
    Bad("agent credential on an admin endpoint", "GET", "/api/collections", 403, "forbidden",
        ("agent",), auth="agent"),
    Bad("agent credential creating a task", "POST", "/api/tasks", 403, "forbidden", ("agent",),
        json={"name": "sneaky", "script": "echo"}, auth="agent"),
    # duplicates
    Bad("create an existing collection", "POST", "/api/collections", 409, "conflict",
        ("'Lab'", "already exists"), json={"name": "Lab"}),
    Bad("create an existing task", "POST", "/api/tasks", 409, "conflict",
        ("'hello'", "already exists"), json={"name": "hello", "script": "echo again"}),
]

# Values at the edges: numbers no integer column holds, NUL characters, half an entry.
EDGE_CASES = [
    Bad("run id beyond any integer column", "GET", f"/api/runs/{HUGE}", 404, "not_found",
        (HUGE,)),
    Bad("computer id beyond any integer column", "GET", f"/api/computers/{HUGE}", 404,
        "not_found", (HUGE,)),
    Bad("task id beyond any integer column", "GET", f"/api/tasks/{HUGE}", 404, "not_found",
        (HUGE,)),
    Bad("run a task id beyond any integer column", "POST", "/api/runs", 404, "not_found",
        (HUGE,), json={"task": HUGE, "targets": ["All Computers"]}),
    Bad("approve a task server id beyond any integer column", "POST",
        f"/api/taskservers/{HUGE}/approve", 404, "not_found", (HUGE,)),
    Bad("computer key of a non-ASCII digit", "GET", "/api/computers/\u00b2", 404, "not_found",
        ("taskfleet computer list",)),
    Bad("computer list offset beyond any integer", "GET", f"/api/computers?offset={HUGE}", 400,
        "invalid_input", ("offset",)),
    Bad("token uses beyond any integer column", "POST", "/api/tokens", 400, "invalid_input",
        ("uses",), json={"kind": "agent", "uses": int(HUGE)}),
    Bad("task name with a NUL character", "POST", "/api/tasks", 400, "invalid_input",
        ("name",), json={"name": "a\x00b", "script": "echo"}),
    Bad("collection name with a NUL character", "POST", "/api/collections", 400,
        "invalid_input", ("name",), json={"name": "c\x00"}),
    Bad("agent-config entry without a collection (draft not empty)", "POST",
        "/api/documents/agent-config/draft/entries", 400, "invalid_input", ("collection",),
        json={"entry": {"task_request_interval_min": 5}}),
    Bad("policy entry without a collection (draft not empty)", "POST",
        "/api/documents/policy/draft/entries", 400, "invalid_input", ("collection",),
        json={"entry": {"task_servers": []}}),
]
# fmt: on


# fmt: off
def ts_cases(computer_id: int) -> list[Bad]:
    """Bad requests to a task server from (or posing as) agent ``computer_id``."""
    other = {"id": "e1", "instance_id": 1, "computer_id": computer_id + 1, "state": "Running",
             "at": 1.0}
    return [
        Bad("malformed status JSON", "POST", "/agent/status", 400, "invalid_input",
            ("not valid JSON",), raw=MALFORMED, auth="agent"),
        Bad("status events of the wrong type", "POST", "/agent/status", 400, "invalid_input",
            ("events",), json={"events": "x"}, auth="agent"),
        Bad("status for another computer", "POST", "/agent/status", 403, "forbidden",
            (f"computer {computer_id + 1}",), json={"events": [other]}, auth="agent"),
        Bad("channel wait 0", "GET", "/agent/channel?wait=0", 400, "invalid_input", ("wait",),
            auth="agent"),
        Bad("channel wait not a number", "GET", "/agent/channel?wait=soon", 400,
            "invalid_input", ("wait='soon'",), auth="agent"),
        Bad("channel wait nan", "GET", "/agent/channel?wait=nan", 400, "invalid_input",
            ("at most 300",), auth="agent"),
        Bad("oversized status, with Content-Length", "POST", "/agent/status", 413,
            "payload_too_large", ("larger than",), raw=big_status_batch(computer_id),
            auth="agent"),
        Bad("oversized status, streamed without Content-Length", "POST", "/agent/status", 413,
            "payload_too_large", ("larger than",), streamed=big_status_batch(computer_id),
            auth="agent"),
        Bad("poll without Authorization", "GET", "/agent/poll", 401, "unauthenticated",
            auth="none"),
        Bad("poll with Bearer garbage", "GET", "/agent/poll", 401, "unauthenticated",
            auth="garbage"),
    ]
# fmt: on


# --- helpers ------------------------------------------------------------------------


def raw_client(base_url: str) -> httpx.Client:
    # No keep-alive: after a 500 uvicorn closes the connection, which must not
    # turn the next case into a spurious connection reset.
    return httpx.Client(
        base_url=base_url, timeout=30, limits=httpx.Limits(max_keepalive_connections=0)
    )


def admin_header(fleet: Fleet) -> dict[str, str]:
    return {"Authorization": fleet.api.client.headers["authorization"]}


def enrol_agent(fleet: Fleet, name: str) -> tuple[int, dict[str, str]]:
    token = fleet.token("agent")
    enrolled = fleet.api.post(
        "/api/agent/enrol", {"token": token, "facts": {"name": name, "hardware_id": f"hw-{name}"}}
    )
    return enrolled["computer_id"], {"Authorization": f"Bearer {enrolled['credential']}"}


def auth_headers(fleet: Fleet, agent: dict[str, str]) -> dict[str, dict[str, str]]:
    admin = admin_header(fleet)["Authorization"]
    wrong_secret = admin.rsplit(".", 1)[0] + ".not-the-secret"
    return {
        "admin": admin_header(fleet),
        "none": {},
        "garbage": {"Authorization": "Bearer garbage"},
        "wrong-secret": {"Authorization": wrong_secret},
        "agent": agent,
    }


def send(client: httpx.Client, bad: Bad, auth: dict[str, dict[str, str]]) -> httpx.Response:
    headers = dict(auth[bad.auth])
    if bad.raw is not None:
        headers["Content-Type"] = "application/json"
        return client.request(bad.method, bad.path, content=bad.raw, headers=headers)
    if bad.streamed is not None:
        headers["Content-Type"] = "application/json"
        return client.request(bad.method, bad.path, content=chunks(bad.streamed), headers=headers)
    if bad.json is not None:
        return client.request(bad.method, bad.path, json=bad.json, headers=headers)
    return client.request(bad.method, bad.path, headers=headers)


def check_refusal(response: httpx.Response, bad: Bad) -> None:
    shown = f"{bad.method} {bad.path} -> {response.status_code} {response.text[:500]}"
    assert "Traceback" not in response.text, shown
    assert response.status_code == bad.status, shown
    assert response.headers["content-type"].startswith("application/json"), shown
    body = response.json()
    # "field" names the input at fault, where there is one (forms show the message there)
    assert {"error", "message"} <= set(body) <= {"error", "message", "field"}, shown
    assert isinstance(body.get("field", ""), str), shown
    assert body["error"] == bad.error, shown
    assert isinstance(body["message"], str) and body["message"], shown
    for words in bad.says:
        assert words.lower() in body["message"].lower(), f"message lacks {words!r}: {shown}"


def snapshot(fleet: Fleet) -> dict[str, Any]:
    return {path: fleet.api.get(path) for path in SNAPSHOT_PATHS}


def assert_still_serving(base_url: str, *procs: Proc) -> None:
    with raw_client(base_url) as client:
        hello = client.get("/hello")
    assert hello.status_code == 200, hello.text
    for proc in procs:
        assert proc.alive(), f"{proc.name} exited"
        assert "Traceback" not in proc.output(), f"{proc.name} log:\n{proc.output()[-4000:]}"


def given_a_populated_ns(fleet: Fleet) -> dict[str, str]:
    """A collection, a task, a non-empty agent-config draft and an enrolled agent."""
    fleet.api.post("/api/collections", {"name": "Lab", "rules": {"name_pattern": "pc-*"}})
    fleet.create_task("hello", "echo hello")
    fleet.api.post(
        "/api/documents/agent-config/draft/entries",
        {"entry": {"collection": "Lab", "task_request_interval_min": 5}},
    )
    fleet.api.post(
        "/api/documents/policy/draft/entries",
        {"entry": {"collection": "Lab", "task_servers": []}},
    )
    _, agent = enrol_agent(fleet, "pc-1")
    return agent


def run_cases(fleet: Fleet, cases: list[Bad], subtests: pytest.Subtests) -> None:
    # Given an NS holding some of everything, and what it stores now
    agent = given_a_populated_ns(fleet)
    auth = auth_headers(fleet, agent)
    before = snapshot(fleet)

    # When each bad request is sent
    with raw_client(fleet.ns_url) as client:
        for bad in cases:
            with subtests.test(msg=bad.id):
                response = send(client, bad, auth)
                # Then it is refused with the right 4xx and a clear JSON message
                check_refusal(response, bad)

    # Then nothing stored changed, the NS still serves and logged no traceback
    assert snapshot(fleet) == before
    assert fleet.ns is not None
    assert_still_serving(fleet.ns_url, fleet.ns)


# --- the NS -------------------------------------------------------------------------


def test_bad_input_gets_a_clear_4xx_and_changes_nothing(
    fleet: Fleet, subtests: pytest.Subtests
) -> None:
    run_cases(fleet, NS_CASES, subtests)


def test_edge_values_get_a_4xx_not_a_500(fleet: Fleet, subtests: pytest.Subtests) -> None:
    run_cases(fleet, EDGE_CASES, subtests)


# --- the task server ----------------------------------------------------------------


def test_bad_input_to_a_task_server_gets_a_clear_4xx(
    fleet: Fleet, subtests: pytest.Subtests
) -> None:
    # Given a task server and an agent assigned to it, whose credential works there
    ts = fleet.start_ts("ts-a")
    fleet.api.post(
        "/api/documents/policy/draft/entries",
        {"entry": {"collection": "All Computers", "task_servers": ["ts-a"]}},
    )
    fleet.api.post("/api/documents/policy/apply")
    computer_id, agent = enrol_agent(fleet, "pc-1")
    with raw_client(fleet.ns_url) as ns:
        assigned = ns.post(
            "/api/agent/assignment",
            json={"facts": {"name": "pc-1", "hardware_id": "hw-pc-1"}},
            headers=agent,
        )
    assert assigned.status_code == 200, assigned.text
    assert assigned.json()["task_server_name"] == "ts-a"
    with raw_client(ts.url) as client:
        # (the task server learns of its approval with its next heartbeat)
        wait_until(
            lambda: client.get("/agent/poll", headers=agent).status_code == 200,
            15,
            "the agent's credential to work on ts-a",
        )
        auth = {"agent": agent, "none": {}, "garbage": {"Authorization": "Bearer garbage"}}
        cases = ts_cases(computer_id)

        # When each bad request is sent to the task server
        for bad in cases:
            with subtests.test(msg=bad.id):
                response = send(client, bad, auth)
                # Then it is refused with the right 4xx and a clear JSON message
                check_refusal(response, bad)

        # Then the agent's credential still works there
        assert client.get("/agent/poll", headers=agent).status_code == 200

    # And the task server and the NS still serve and logged no traceback
    assert fleet.ns is not None
    assert_still_serving(ts.url, ts.proc)
    assert_still_serving(fleet.ns_url, fleet.ns)


# --- random JSON ----------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
collection_names = st.sampled_from(["All Computers", "Lab", "nope"]) | json_values
RANDOM_BODIES = {
    "POST /api/tasks": json_values
    | st.fixed_dictionaries(
        {"name": json_values, "script": json_values},
        optional={"interpreter": json_values, "timeout_s": json_values, "type": json_values},
    ),
    "PUT /api/documents/policy/draft": json_values
    | st.fixed_dictionaries(
        {
            "entries": st.lists(
                st.fixed_dictionaries(
                    {"collection": collection_names}, optional={"task_servers": json_values}
                )
                | json_values,
                max_size=3,
            )
        }
    ),
    "POST /api/documents/agent-config/draft/entries": json_values
    | st.fixed_dictionaries(
        {
            "entry": st.fixed_dictionaries(
                {},
                optional={
                    "collection": collection_names,
                    "task_request_interval_min": json_values,
                    "send_status_interval_s": json_values,
                },
            )
            | json_values
        },
        optional={"position": json_values},
    ),
}


@pytest.mark.parametrize("endpoint", list(RANDOM_BODIES))
def test_random_json_never_gets_a_5xx(fleet: Fleet, endpoint: str) -> None:
    # Given an NS holding some of everything (one NS for all the examples)
    given_a_populated_ns(fleet)
    method, path = endpoint.split(" ")
    headers = admin_header(fleet)

    @settings(
        max_examples=30,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(body=RANDOM_BODIES[endpoint])
    def check(body: Any) -> None:
        # When a random JSON value is sent
        with raw_client(fleet.ns_url) as client:
            response = client.request(method, path, json=body, headers=headers)
        # Then it is accepted or refused with a 4xx and a JSON message, never a 5xx
        shown = f"{endpoint} {body!r} -> {response.status_code} {response.text[:500]}"
        assert response.status_code < 500, shown
        assert "Traceback" not in response.text, shown
        if response.status_code >= 400:
            assert {"error", "message"} <= set(response.json()), shown
            assert set(response.json()) <= {"error", "message", "field"}, shown

    check()

    # Then the NS still serves and logged no traceback
    assert fleet.ns is not None
    assert_still_serving(fleet.ns_url, fleet.ns)
