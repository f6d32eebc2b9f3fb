"""Batched delivery at the NS: many computers' work in one exchange, a run's task sent once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
import pytest

from tests.fleet import Fleet

# Hand-made agents (raw enrolment, no certificate) probe something other than TLS,
# which tests/integration/test_tls.py covers: this fleet runs --insecure-http.
pytestmark = pytest.mark.plain_http


AGENTS = 30


@contextlib.contextmanager
def approved_task_server(fleet: Fleet) -> Iterator[tuple[httpx.Client, str]]:
    """A task-server identity registered, approved and heartbeating through the real API."""
    token = fleet.token("taskserver")
    facts = {"name": "ts-batch", "hardware_id": "hw-ts-batch"}
    reply = fleet.api.post(
        "/api/ts/register", {"token": token, "facts": facts, "url": "http://127.0.0.1:9"}
    )
    fleet.api.post(f"/api/taskservers/{reply['name']}/approve")
    header = {"Authorization": f"Bearer {reply['credential']}"}
    with httpx.Client(base_url=fleet.ns_url, headers=header) as client:
        client.post("/api/ts/heartbeat", json={}).raise_for_status()
        yield client, reply["name"]


def enrol_agents(fleet: Fleet, count: int) -> None:
    token = fleet.token("agent")
    with httpx.Client(base_url=fleet.ns_url) as client:
        for n in range(count):
            facts = {"name": f"pc-{n:03d}", "hardware_id": f"hw-pc-{n:03d}"}
            enrolled = client.post("/api/agent/enrol", json={"token": token, "facts": facts})
            header = {"Authorization": f"Bearer {enrolled.json()['credential']}"}
            assigned = client.post("/api/agent/assignment", json={"facts": facts}, headers=header)
            assert assigned.json()["task_server_name"] == "ts-batch", assigned.text


def test_work_for_many_computers_comes_in_pages_with_the_run_task_once(fleet: Fleet) -> None:
    # Given an approved task server serving 30 computers by policy, and a run on all of them
    with approved_task_server(fleet) as (ts, name):
        fleet.apply_policy("Batch", "pc-*", [name])
        enrol_agents(fleet, AGENTS)
        fleet.create_task("hello", "echo hello")
        run_id = fleet.run("hello", ["Batch"])
        # When the task server hears that work is waiting
        assert ts.get("/api/ts/events", params={"wait": 0}).json()["work_waiting"] is True
        # And asks for 20 instances: it gets 20 computers' work and the run's task, once
        first = ts.post("/api/ts/work", json={"limit": 20}).json()
        assert len(first["work"]) == 20 and first["more"] is True
        assert [r["run_id"] for r in first["runs"]] == [run_id]
        assert first["runs"][0]["params"]["script"] == "echo hello"
        # Then the next page leaves out the run it said it knows
        second = ts.post("/api/ts/work", json={"limit": 20, "known_runs": [run_id]}).json()
        assert len(second["work"]) == AGENTS - 20 and second["more"] is False
        assert second["runs"] == []
        refs = {(w["computer_id"], w["instance_id"]) for w in first["work"] + second["work"]}
        assert len(refs) == AGENTS  # every computer once, no instance twice
        # And nothing is left: delivered work is not handed out again (until redelivery)
        assert ts.post("/api/ts/work", json={"limit": 20}).json()["work"] == []
        assert ts.get("/api/ts/events", params={"wait": 0}).json()["work_waiting"] is False


def test_a_work_request_out_of_bounds_is_refused_with_the_field(fleet: Fleet) -> None:
    with approved_task_server(fleet) as (ts, _):
        for body, field in [({"limit": 0}, "limit"), ({"known_runs": [1] * 10_001}, "known_runs")]:
            response = ts.post("/api/ts/work", json=body)
            assert response.status_code == 400, response.text
            assert response.json()["field"] == field
