"""A task server's client limit and heartbeat period: what it reports, what an admin sets."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from taskfleet.cli.launcher import wait_until
from tests.fleet import ApiError, Fleet

# Hand-made agents (raw enrolment, no certificate) probe something other than TLS,
# which tests/integration/test_tls.py covers: this fleet runs --insecure-http.
pytestmark = pytest.mark.plain_http


def register(fleet: Fleet, name: str, client_limit: int, heartbeat: float) -> httpx.Client:
    """A task server as the NS sees it (registration, then heartbeats), without a process."""
    body = {
        "token": fleet.token("taskserver"),
        "facts": {"name": name, "hardware_id": f"hw-{name}", "addresses": []},
        "url": f"{fleet.scheme}://127.0.0.1:9",
        "client_limit": client_limit,
        "heartbeat_period_s": heartbeat,
        "csr": fleet.csr("taskserver"),
    }
    reply = httpx.post(f"{fleet.ns_url}/api/ts/register", json=body)
    assert reply.status_code == 200, reply.text
    credential = reply.json()["credential"]
    return httpx.Client(base_url=fleet.ns_url, headers={"Authorization": f"Bearer {credential}"})


def heartbeat(client: httpx.Client, **values: Any) -> httpx.Response:
    return client.post("/api/ts/heartbeat", json=values)


def row(fleet: Fleet, name: str) -> dict[str, Any]:
    found: dict[str, Any] = {r["name"]: r for r in fleet.api.get("/api/taskservers")}[name]
    return found


def settings(fleet: Fleet, name: str) -> tuple[Any, ...]:
    r = row(fleet, name)
    return (r["client_limit"], r["heartbeat_period_s"], r["admin_client_limit"])


def patch(fleet: Fleet, name: str, body: Any) -> Any:
    return fleet.api.call("PATCH", f"/api/taskservers/{name}", json=body)


def assign(fleet: Fleet, token: str, name: str) -> dict[str, Any]:
    facts = {"name": name, "hardware_id": f"hw-{name}", "addresses": []}
    enrolled = httpx.post(f"{fleet.ns_url}/api/agent/enrol", json={"token": token, "facts": facts})
    headers = {"Authorization": f"Bearer {enrolled.json()['credential']}"}
    reply = httpx.post(
        f"{fleet.ns_url}/api/agent/assignment", json={"facts": facts}, headers=headers
    )
    assert reply.status_code == 200, reply.text
    found: dict[str, Any] = reply.json()
    return found


def test_a_restart_with_a_longer_heartbeat_does_not_look_stale(fleet: Fleet) -> None:
    # Given an approved task server that registered with a 0.5 s heartbeat
    with register(fleet, "ts-slow", client_limit=5, heartbeat=0.5) as ts:
        fleet.api.post("/api/taskservers/ts-slow/approve")
        assert heartbeat(ts).status_code == 200
        # ... which looks stale after 3 periods without a heartbeat (R2)
        fleet.wait_available("ts-slow", False, timeout=10)
        assert "heartbeat stale" in row(fleet, "ts-slow")["why_unavailable"]

        # When it starts again with --heartbeat 30 and --client-limit 9: its heartbeat says so
        assert heartbeat(ts, client_limit=9, heartbeat_period_s=30).status_code == 200

        # Then the NS judges it by 30 s from now on: still available 2 s (4 old periods) later
        time.sleep(2)
        assert row(fleet, "ts-slow")["available"], row(fleet, "ts-slow")
        assert settings(fleet, "ts-slow") == (9, 30, None)
        # ... and the audit log says the task server changed them
        entries = [e for e in fleet.api.get("/api/audit") if e["action"] == "taskserver.report"]
        assert entries and entries[0]["detail"] == {"client_limit": 9, "heartbeat_period_s": 30}
        # ... but a heartbeat that repeats the same values adds no audit entry
        assert heartbeat(ts, client_limit=9, heartbeat_period_s=30).status_code == 200
        reports = [e for e in fleet.api.get("/api/audit") if e["action"] == "taskserver.report"]
        assert len(reports) == 1

        # And a heartbeat carrying values out of range is refused, naming the field
        for bad, field in [
            ({"client_limit": 0}, "client_limit"),
            ({"client_limit": 2_000_000}, "client_limit"),
            ({"heartbeat_period_s": 0.01}, "heartbeat_period_s"),
            ({"heartbeat_period_s": 1e9}, "heartbeat_period_s"),
        ]:
            reply = heartbeat(ts, **bad)
            assert reply.status_code == 400, reply.text
            assert reply.json()["field"] == field
        assert heartbeat(ts, client_limit="many").status_code == 400
        assert settings(fleet, "ts-slow") == (9, 30, None)


def test_a_task_server_restarted_with_new_values_reports_them(fleet: Fleet) -> None:
    # Given an approved task server started with --client-limit 7 and --heartbeat 2
    ts = fleet.start_ts("ts-1", "--client-limit", "7")
    assert settings(fleet, "ts-1") == (7, 2, None)
    # When it is restarted, keeping its identity, with --client-limit 9 and --heartbeat 3
    fleet.launcher.stop(ts.proc)
    fleet.start_ts("ts-1", "--client-limit", "9", "--heartbeat", "3")
    # Then the NS uses the new values (it does not register again: its heartbeat says so)
    wait_until(lambda: settings(fleet, "ts-1") == (9, 3, None), 20, "the new values")
    assert [
        e["action"] for e in fleet.api.get("/api/audit", params={"action": "taskserver.r"})
    ] == [
        "taskserver.report",
        "taskserver.register",
    ]


def test_an_admin_setting_wins_until_cleared_and_binds_assignment(fleet: Fleet) -> None:
    # Given an approved task server reporting a client limit of 5, listed by the policy
    with register(fleet, "ts-a", client_limit=5, heartbeat=30) as ts:
        fleet.api.post("/api/taskservers/ts-a/approve")
        assert heartbeat(ts).status_code == 200
        fleet.apply_policy("Desks", "desk-*", ["ts-a"])

        # When an admin sets its client limit to 1
        result = patch(fleet, "ts-a", {"client_limit": 1})
        # Then the limit in effect is the admin's, and the reported one is kept beside it
        assert (result["client_limit"], result["reported_client_limit"]) == (1, 5)
        assert result["heartbeat_period_s"] == 30 and "warning" not in result

        # ... and assignment keeps to it: the second computer goes to the NS, and says why
        token = fleet.token("agent")
        assert assign(fleet, token, "desk-1")["task_server_name"] == "ts-a"
        second = assign(fleet, token, "desk-2")
        assert second["task_server_id"] is None
        assert "ts-a skipped, at its client limit (1/1)" in second["reason"]

        # When the task server reports other values (it restarted): the admin's still wins
        assert heartbeat(ts, client_limit=7, heartbeat_period_s=20).status_code == 200
        r = row(fleet, "ts-a")
        assert (r["client_limit"], r["reported_client_limit"], r["admin_client_limit"]) == (1, 7, 1)
        assert r["heartbeat_period_s"] == 20  # not set by the admin: the reported one

        # When the admin sets the heartbeat period too short for how often it beats
        result = patch(fleet, "ts-a", {"heartbeat_period_s": 5})
        # Then it is set, with a warning that says what to do
        assert result["heartbeat_period_s"] == 5
        assert "will look stale" in result["warning"] and "more than 6.67s" in result["warning"]

        # When the admin clears both
        result = patch(fleet, "ts-a", {"client_limit": None, "heartbeat_period_s": None})
        # Then the task server's own values apply again
        assert (result["client_limit"], result["heartbeat_period_s"]) == (7, 20)
        assert (result["admin_client_limit"], result["admin_heartbeat_period_s"]) == (None, None)
        assert assign(fleet, token, "desk-3")["task_server_name"] == "ts-a"

    # And every admin change is in the audit log, with what was set
    sets = [e for e in fleet.api.get("/api/audit") if e["action"] == "taskserver.set"]
    assert [e["detail"] for e in reversed(sets)] == [
        {"client_limit": 1},
        {"heartbeat_period_s": 5},
        {"client_limit": None, "heartbeat_period_s": None},
    ]


BAD_SETTINGS: list[tuple[Any, str]] = [
    ({}, "give one or both of client_limit and heartbeat_period_s"),
    ({"client_limit": 0}, "client_limit must be between 1 and 1,000,000"),
    ({"client_limit": 2.5}, "client_limit"),
    ({"client_limit": True}, "client_limit"),
    ({"heartbeat_period_s": 0}, "heartbeat_period_s must be between"),
    ({"heartbeat_period_s": "fast"}, "heartbeat_period_s"),
    ({"client_limt": 3}, "client_limt"),
    ([1, 2], ""),
]


def test_bad_admin_settings_are_refused_and_change_nothing(fleet: Fleet) -> None:
    # Given a registered task server
    register(fleet, "ts-b", client_limit=5, heartbeat=10).close()
    for body, says in BAD_SETTINGS:
        # When an admin sends a bad change
        with pytest.raises(ApiError) as refused:
            patch(fleet, "ts-b", body)
        # Then it is refused with a message that says what is wrong
        assert refused.value.status == 400, (body, refused.value.body)
        assert says in refused.value.body["message"], (body, refused.value.body)
    # ... and nothing changed
    assert settings(fleet, "ts-b") == (5, 10, None)
    assert not [e for e in fleet.api.get("/api/audit") if e["action"] == "taskserver.set"]


def test_setting_an_unknown_task_server_says_how_to_find_one(fleet: Fleet) -> None:
    with pytest.raises(ApiError) as refused:
        patch(fleet, "nope", {"client_limit": 3})
    assert refused.value.status == 404
    assert "taskfleet taskserver list" in refused.value.body["message"]
