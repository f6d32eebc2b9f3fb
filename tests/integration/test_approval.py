"""R1: a pending or revoked task server is refused everything; approval lets it serve."""

from __future__ import annotations

import json

import httpx
import pytest

from taskfleet.cli.launcher import wait_until
from tests.fleet import Fleet, TaskServerProc


def ts_client(fleet: Fleet, ts: TaskServerProc) -> httpx.Client:
    credential = json.loads((ts.data_dir / "identity.json").read_text())["credential"]
    return httpx.Client(base_url=fleet.ns_url, headers={"Authorization": f"Bearer {credential}"})


def assert_refused(client: httpx.Client, state: str) -> None:
    for method, path, body in [
        ("GET", "/api/ts/events?wait=0", None),
        ("GET", "/api/ts/agents", None),
        ("POST", "/api/ts/work", {"computer_id": 1}),
        ("POST", "/api/ts/status", {"events": []}),
    ]:
        response = client.request(method, path, json=body)
        assert response.status_code == 403, (path, response.text)
        assert response.json()["error"] == "not_approved"
        assert f"is {state}, not approved" in response.json()["message"]


@pytest.mark.timeout(180)
def test_pending_and_revoked_task_servers_are_refused(fleet: Fleet) -> None:
    # Given a task server that registered but is not approved
    ts = fleet.start_ts("ts-new", approve=False)
    fleet.create_task("hello", "echo hello")
    with ts_client(fleet, ts) as client:
        # Then every call it makes for work, agents or data is refused
        assert_refused(client, "pending")
        # ... it may still heartbeat, so the admin sees it alive, and learns it is pending
        assert client.post("/api/ts/heartbeat", json={}).json()["approval"] == "pending"

        # And an agent is not given a pending task server
        fleet.start_agent("pc-1")
        assert fleet.wait_assigned(["pc-1"])["pc-1"]["assign_step"] == "ns-fallback"

        # When the admin approves it
        fleet.api.post("/api/taskservers/ts-new/approve")
        fleet.wait_available("ts-new")
        # Then it may serve: a restarted agent is assigned to it and runs a task through it
        fleet.launcher.stop(fleet.agents["pc-1"])
        fleet.start_agent("pc-1")
        wait_until(lambda: fleet.computer("pc-1")["task_server"] == "ts-new", 30, "pc-1 on ts-new")
        run = fleet.wait_run(fleet.run("hello", ["pc-1"]))
        assert run["counts"] == {"Succeeded": 1}

        # When the admin revokes it
        fleet.api.post("/api/taskservers/ts-new/revoke")
        # Then it is refused again, and it refuses its agents, who go back to the NS
        assert_refused(client, "revoked")
        wait_until(
            lambda: fleet.computer("pc-1")["assign_step"] == "ns-fallback",
            30,
            "pc-1 to leave the revoked task server",
        )
        run = fleet.wait_run(fleet.run("hello", ["pc-1"]))
        assert run["counts"] == {"Succeeded": 1}

    audit = [e["action"] for e in fleet.api.get("/api/audit")]
    assert "taskserver.approve" in audit and "taskserver.revoke" in audit


# Over TLS an agent cannot even connect to a pending task server (its certificate is
# not from the CA: test_tls.py); on plain HTTP the refusal itself is what is checked.
@pytest.mark.plain_http
def test_agent_calling_a_pending_task_server_is_told_to_ask_the_ns(fleet: Fleet) -> None:
    # Given a pending task server and an enrolled agent's credential
    ts = fleet.start_ts("ts-new", approve=False)
    token = fleet.token("agent")
    facts = {"name": "pc-x", "hardware_id": "hw-x", "addresses": ["10.5.5.5/24"]}
    enrolled = httpx.post(
        f"{fleet.ns_url}/api/agent/enrol", json={"token": token, "facts": facts}
    ).json()
    # When the agent polls that task server
    response = httpx.get(
        f"{ts.url}/agent/poll", headers={"Authorization": f"Bearer {enrolled['credential']}"}
    )
    # Then it is refused with a message that says to ask the NS
    assert response.status_code == 403
    assert response.json()["error"] == "not_approved"
    assert "ask the notification server" in response.json()["message"]
