"""The NS's /metrics on both stores: the fleet from the database (instances and runs by state,
task servers and their capacity figures), the batches it handed out and took in, and who
may read it."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from taskfleet.cli.launcher import wait_until
from tests.fleet import Fleet
from tests.ns.test_work_batch import approved_task_server, enrol_agents
from tests.scrape import Scrape, scrape

# Hand-made agents (raw enrolment, no certificate) probe something other than TLS,
# which tests/integration/test_tls.py covers: this fleet runs --insecure-http.
pytestmark = pytest.mark.plain_http


AGENTS = 5
REQUESTS = "taskfleet_ns_requests_total"
EVENTS = "taskfleet_ns_status_events_total"
DURATIONS = "taskfleet_ns_request_duration_seconds_count"


def succeeded(work: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "instance_id": work["instance_id"],
        "computer_id": work["computer_id"],
        "state": "Succeeded",
        "at": time.time(),
        "return_code": 0,
        "output": "hello",
    }


def test_the_fleet_by_state_and_the_batches_handed_out(fleet: Fleet) -> None:
    # Given a task server reporting 800 channels, five computers assigned to it by policy
    with approved_task_server(fleet) as (ts, name):
        ts.post("/api/ts/heartbeat", json={"channel_capacity": 800}).raise_for_status()
        fleet.apply_policy("Batch", "pc-*", [name])
        enrol_agents(fleet, AGENTS)
        # And a run on them, fetched in two batches, two of them done and one bogus status
        fleet.create_task("hello", "echo hello")
        run_id = fleet.run("hello", ["Batch"])
        first = ts.post("/api/ts/work", json={"limit": 3}).json()
        second = ts.post("/api/ts/work", json={"limit": 3, "known_runs": [run_id]}).json()
        work = first["work"] + second["work"]
        bogus = {**succeeded(work[0]), "instance_id": 2_000_000_000}
        events = [succeeded(w) for w in work[:2]] + [bogus]
        ack = ts.post("/api/ts/status", json={"events": events}).json()
        assert ack["rejected"] == [bogus["id"]]

        # When Prometheus scrapes with a viewer's credential
        viewer = fleet.api.post("/api/users", {"name": "prometheus", "role": "viewer"})
        header = {"Authorization": f"Bearer {viewer['credential']}"}
        found = scrape(fleet.ns_url, header)

        # Then the instances and runs are there by state
        assert found.value("taskfleet_ns_instances", state="Succeeded") == 2
        assert found.value("taskfleet_ns_instances", state="Pending") == AGENTS - 2
        assert found.value("taskfleet_ns_instances", state="Failed") == 0
        assert found.value("taskfleet_ns_runs", state="in_progress") == 1
        assert found.value("taskfleet_ns_runs", state="done") == 0
        # And the computers by the step that assigned them (the task server's own: none)
        assert found.value("taskfleet_ns_computers", step="policy") == AGENTS
        assert found.value("taskfleet_ns_computers", step="none") == 1
        assert found.value("taskfleet_ns_enrolments_total") == AGENTS
        assert found.value("taskfleet_ns_assignments_total", step="policy") == AGENTS
        # And the task server with the capacity figures the R7 advice compares
        assert found.value("taskfleet_ns_task_servers", state="available") == 1
        assert found.value("taskfleet_ns_task_servers", state="pending") == 0
        assert found.value("taskfleet_ns_task_server_available", task_server=name) == 1
        assert found.value("taskfleet_ns_task_server_assigned", task_server=name) == AGENTS
        assert found.value("taskfleet_ns_task_server_channel_capacity", task_server=name) == 800
        assert found.value("taskfleet_ns_task_server_client_limit", task_server=name) == 5000
        assert found.value("taskfleet_ns_task_server_capacity_rps") == 9000
        # And the two work batches carried five instances and the run's task once
        assert found.value("taskfleet_ns_work_batch_instances_count") == 2
        assert found.value("taskfleet_ns_work_batch_instances_sum") == AGENTS
        assert found.value("taskfleet_ns_run_tasks_sent_total") == 1
        # And the relayed batch: three events, two applied, the bogus one refused
        assert found.value("taskfleet_ns_status_batch_events_sum") == 3
        assert found.value(EVENTS, source="task_server", result="accepted") == 2
        assert found.value(EVENTS, source="task_server", result="rejected") == 1
        # And requests by route template, with their durations
        assert found.value(REQUESTS, method="POST", route="/api/ts/work", code="200") == 2
        approve = "/api/taskservers/{key}/approve"
        assert found.value(REQUESTS, method="POST", route=approve, code="200") == 1
        assert found.value(DURATIONS, method="POST", route="/api/ts/work") == 2

        # When the last instances finish and Prometheus scrapes again at once
        more = ts.post("/api/ts/status", json={"events": [succeeded(w) for w in work[2:]]})
        assert len(more.json()["accepted"]) == AGENTS - 2
        again = scrape(fleet.ns_url, header)
        # Then the database is not asked again within a few seconds: the same figures
        assert again.value("taskfleet_ns_instances", state="Succeeded") == 2
        assert again.value("taskfleet_ns_figures_age_seconds") > 0

        # And a little later the run is done
        def refreshed() -> Scrape | None:
            now = scrape(fleet.ns_url, header)
            return now if now.value("taskfleet_ns_runs", state="done") == 1 else None

        later = wait_until(refreshed, 15, "the fleet figures refreshed")
        assert isinstance(later, Scrape)
        assert later.value("taskfleet_ns_instances", state="Succeeded") == AGENTS
        assert later.value("taskfleet_ns_runs", state="in_progress") == 0


def test_metrics_need_a_user_credential(fleet: Fleet) -> None:
    # Without a credential, or with a task server's, the NS refuses
    assert httpx.get(f"{fleet.ns_url}/metrics").status_code == 401
    with approved_task_server(fleet) as (ts, _):
        assert ts.get("/metrics").status_code == 403
    # With a disabled user's, too
    user = fleet.api.post("/api/users", {"name": "scraper", "role": "viewer"})
    header = {"Authorization": f"Bearer {user['credential']}"}
    assert httpx.get(f"{fleet.ns_url}/metrics", headers=header).status_code == 200
    fleet.api.post("/api/users/scraper/disable")
    assert httpx.get(f"{fleet.ns_url}/metrics", headers=header).status_code == 401
