"""R8: status held by a task server survives a SIGKILL; the NS counts every status once."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest

from taskfleet.cli.launcher import wait_until
from tests.fleet import Fleet

# Hand-made agents (raw enrolment, no certificate) probe something other than TLS,
# which tests/integration/test_tls.py covers: this fleet runs --insecure-http.
pytestmark = pytest.mark.plain_http


def test_task_server_killed_while_holding_status_loses_none(fleet: Fleet) -> None:
    # Given a task server that relays status only once an hour, and agents sending status fast
    ts = fleet.start_ts("ts-a", "--status-batch-interval", "3600")
    fleet.api.post(
        "/api/documents/agent-config/draft/entries",
        {
            "entry": {
                "collection": "All Computers",
                "task_request_interval_min": 0.05,
                "send_status_interval_s": 0.5,
            }
        },
    )
    fleet.api.post("/api/documents/agent-config/apply")
    agents = ["pc-1", "pc-2"]
    for name in agents:
        fleet.start_agent(name)
    fleet.wait_assigned(agents)
    fleet.create_task("hello", "echo held")

    # When a (not live) run finishes on the agents, its status is spooled at the task server
    run_id = fleet.run("hello", agents, live=False)
    spool = ts.data_dir / "spool"
    wait_until(lambda: spooled_events(spool) >= 6, 30, "6 status events in the spool")
    assert fleet.api.get(f"/api/runs/{run_id}")["counts"].get("Succeeded", 0) == 0

    # And the task server is killed without warning, then started again normally
    fleet.launcher.kill(ts.proc)
    fleet.start_ts("ts-a", approve=False)

    # Then every status arrives, each counted once
    run = fleet.wait_run(run_id, timeout=60)
    assert run["counts"] == {"Succeeded": 2}
    for instance in run["instances"]:
        assert instance["output"].strip() == "held"
        assert instance["status_count"] == 3  # Received, Running, Succeeded
    assert not list(spool.glob("*.json"))


def test_resent_status_is_counted_once(fleet: Fleet) -> None:
    # Given an agent served by the NS with one instance waiting
    token = fleet.token("agent")
    facts = {"name": "pc-x", "hardware_id": "hw-x", "addresses": ["10.5.5.5/24"]}
    with httpx.Client(base_url=fleet.ns_url) as client:
        enrolled = client.post("/api/agent/enrol", json={"token": token, "facts": facts}).json()
        client.headers["Authorization"] = f"Bearer {enrolled['credential']}"
        client.post("/api/agent/assignment", json={"facts": facts}).raise_for_status()
        fleet.create_task("hello", "echo hi")
        run_id = fleet.run("hello", ["pc-x"])
        work = client.get("/agent/poll").json()["work"]
        assert len(work) == 1
        event = {
            "id": uuid.uuid4().hex,
            "instance_id": work[0]["instance_id"],
            "computer_id": enrolled["computer_id"],
            "state": "Succeeded",
            "at": 1.0,
            "return_code": 0,
            "output": "hi",
        }
        # When the same status is sent three times (lost acknowledgements)
        for _ in range(3):
            ack = client.post(
                "/agent/status",
                content=json.dumps({"events": [event]}),
                headers={"Content-Type": "application/json"},
            ).json()
            assert ack["accepted"] == [event["id"]]
    # Then the NS applied it once
    instance = fleet.api.get(f"/api/runs/{run_id}")["instances"][0]
    assert (instance["state"], instance["status_count"]) == ("Succeeded", 1)


def spooled_events(spool: Path) -> int:
    """Events in the spool's batch files (each file holds a JSON list of events)."""
    count = 0
    for path in spool.glob("*.json"):
        try:
            count += len(json.loads(path.read_text()))
        except (OSError, ValueError):
            pass  # renamed or half-visible between glob and read: counted next time
    return count
