"""A task server's /metrics with real processes: a run's task travels once, polls, channels and
status are counted, refused status becomes a dead letter, and NS link errors are counted."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from taskfleet.cli.launcher import wait_until
from taskfleet.protocol import pki
from tests.fleet import Fleet
from tests.scrape import Scrape, scrape

AGENTS = ["pc-1", "pc-2", "pc-3"]
REQUESTS = "taskfleet_ts_requests_total"
# Nothing here reads the database: one store is enough.
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def drained(url: str) -> Scrape | None:
    found = scrape(url)
    return found if found.value("taskfleet_ts_spool_events") == 0 else None


def test_a_run_is_fetched_once_and_its_polls_channels_and_status_are_counted(
    fleet: Fleet,
) -> None:
    # Given one task server serving three agents, all holding their notification channel
    ts = fleet.start_ts("ts-a")
    fleet.apply_policy("Lab", "pc-*", ["ts-a"])
    for name in AGENTS:
        fleet.start_agent(name)
    fleet.wait_assigned(AGENTS)
    wait_until(
        lambda: scrape(ts.url).value("taskfleet_ts_open_channels") == len(AGENTS),
        30,
        "every agent's channel open",
    )
    before = scrape(ts.url)  # no credential: the task server's /metrics is open

    # When a script runs on the three
    fleet.create_task("hello", "echo hello")
    run = fleet.wait_run(fleet.run("hello", ["Lab"]))
    assert run["counts"] == {"Succeeded": len(AGENTS)}
    after = wait_until(lambda: drained(ts.url), 30, "the status spool relayed")
    assert isinstance(after, Scrape)

    def grew(name: str, **labels: str) -> float:
        return after.get(name, **labels) - before.get(name, **labels)

    # Then the run's task came once, with the three computers' work, in as many fetches
    assert grew("taskfleet_ts_run_tasks_received_total") == 1
    assert grew("taskfleet_ts_work_fetch_instances_sum") == len(AGENTS)
    fetches = grew("taskfleet_ts_work_fetch_seconds_count")
    assert fetches >= 1 and grew("taskfleet_ts_work_fetch_instances_count") == fetches
    # And the work went out on the tickled channels (by route template and code)
    assert grew(REQUESTS, method="GET", route="/agent/channel", code="200") >= len(AGENTS)
    assert after.total(REQUESTS, route="/agent/poll") >= len(AGENTS)  # one each at start
    # And every status the agents reported was taken, then relayed to the NS in batches
    taken = grew("taskfleet_ts_status_events_total", source="agent", result="accepted")
    assert taken >= len(AGENTS)  # at least each one's Succeeded
    assert grew("taskfleet_ts_status_relay_events_sum") >= taken
    assert grew("taskfleet_ts_status_relay_seconds_count") >= 1
    assert after.value("taskfleet_ts_dead_letters_total") == 0
    # And the state read at scrape time: nothing held, agents known, approved
    assert after.value("taskfleet_ts_work_waiting") == 0
    assert after.value("taskfleet_ts_agents") == len(AGENTS)
    assert after.value("taskfleet_ts_approval", state="approved") == 1
    assert after.value("taskfleet_ts_approval", state="pending") == 0
    # And the channel capacity is the figure the NS got in the heartbeat for the R7 advice
    ns = scrape(fleet.ns_url, headers=dict(fleet.api.client.headers))
    capacity = after.value("taskfleet_ts_channel_capacity")
    assert capacity > len(AGENTS)
    assert ns.value("taskfleet_ns_task_server_channel_capacity", task_server="ts-a") == capacity


def test_refused_status_is_a_dead_letter_paths_are_templates_and_link_errors_count(
    fleet: Fleet,
) -> None:
    # Given one task server and one agent it serves
    ts = fleet.start_ts("ts-a")
    fleet.apply_policy("Lab", "pc-*", ["ts-a"])
    fleet.start_agent("pc-1")
    fleet.wait_assigned(["pc-1"])
    identity = json.loads((fleet.root / "agents" / "pc-1" / "identity.json").read_text())
    header = {"Authorization": f"Bearer {identity['credential']}"}

    # When the agent reports on an instance the NS never created
    event = {
        "id": uuid.uuid4().hex,
        "instance_id": 2_000_000_000,
        "computer_id": identity["computer_id"],
        "state": "Succeeded",
        "at": time.time(),
        "live": True,
    }
    # (as the agent: over TLS with its client certificate)
    state = fleet.root / "agents" / "pc-1"
    verify = pki.client_context(fleet.ca_bundle, state / pki.CERT_FILE, state / pki.KEY_FILE)
    reply = httpx.post(
        f"{ts.url}/agent/status", json={"events": [event]}, headers=header, verify=verify
    )
    assert reply.json()["accepted"] == [event["id"]]  # on the task server's disk: its own now

    # Then the NS refuses it when relayed, and the task server counts a dead letter
    after = wait_until(lambda: drained(ts.url), 30, "the status spool relayed")
    assert isinstance(after, Scrape)
    assert after.value("taskfleet_ts_dead_letters_total") == 1
    ns = scrape(fleet.ns_url, headers=dict(fleet.api.client.headers))
    refused = {"source": "task_server", "result": "rejected"}
    assert ns.value("taskfleet_ns_status_events_total", **refused) == 1

    # When something asks for a path no route takes, with an id in it
    assert httpx.get(f"{ts.url}/agent/runs/987654").status_code == 404
    # Then it is counted as route "other", never by its raw path
    found = scrape(ts.url)
    assert found.value(REQUESTS, method="GET", route="other", code="404") == 1
    assert "987654" not in found.text

    # When the NS goes away
    assert fleet.ns is not None
    fleet.launcher.kill(fleet.ns)
    # Then the task server still answers /metrics, counting its failed calls to the NS
    failed = {"call": "heartbeat", "error": "unavailable"}
    wait_until(
        lambda: scrape(ts.url).get("taskfleet_ts_ns_link_errors_total", **failed) >= 1,
        20,
        "a failed heartbeat counted",
    )
