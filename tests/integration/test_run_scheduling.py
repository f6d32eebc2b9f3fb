"""Runs with real processes: schedules across an NS restart and across two NS replicas,
a maintenance window that opens, exclusions, and completion by a minimum count."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import pytest

from taskfleet.cli.launcher import wait_until
from tests.cli.test_cli import taskfleet
from tests.fleet import Api, Fleet

# Delivery, status and run lifecycle take different SQL on each store: both run it.
pytestmark = pytest.mark.both_stores

DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def lab(fleet: Fleet, names: list[str], poll_minutes: float = 5) -> None:
    """A task server, and agents in collection 'Lab' that poll only every ``poll_minutes``
    (so only a tickle brings them work soon), assigned to it."""
    fleet.api.post(
        "/api/documents/agent-config/draft/entries",
        {
            "entry": {
                "collection": "All Computers",
                "task_request_interval_min": poll_minutes,
                "send_status_interval_s": 60,
            }
        },
    )
    fleet.api.post("/api/documents/agent-config/apply")
    fleet.start_ts("ts-1")
    fleet.apply_policy("Lab", "pc-*", ["ts-1"])
    for name in names:
        fleet.start_agent(name)
    fleet.wait_assigned(names)
    fleet.create_task("hello", "echo hello from $(hostname)")


def schedule_runs(api: Api, schedule_id: int) -> list[dict[str, Any]]:
    return [
        r
        for r in api.get("/api/runs", params={"limit": 500})["runs"]
        if r["schedule_id"] == schedule_id
    ]


def test_a_scheduled_run_survives_an_ns_restart_and_fires_once(fleet: Fleet) -> None:
    # Given an agent, and a run scheduled 6 s from now
    lab(fleet, ["pc-1"])
    at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=6)
    schedule = fleet.api.post(
        "/api/schedules",
        {"task": "hello", "targets": ["Lab"], "at": at.isoformat(), "live": True},
    )
    # When the NS stops before that time and starts again after it (the agent is stopped
    # meanwhile too: with the NS away it would fail over, which is another test's matter)
    assert fleet.ns is not None
    fleet.launcher.stop(fleet.agents["pc-1"])
    fleet.launcher.stop(fleet.ns)
    time.sleep(max(0.0, at.timestamp() - time.time()) + 3)
    fleet.api.client.close()  # start_ns makes a new one
    fleet.start_ns()
    fleet.start_agent("pc-1")

    # Then the schedule fires once, late, and its run reaches the agent
    def fired() -> list[dict[str, Any]] | None:
        found = schedule_runs(fleet.api, schedule["id"])
        return found or None

    runs = wait_until(fired, 30, "the scheduled run")
    assert isinstance(runs, list) and len(runs) == 1
    run = fleet.wait_run(runs[0]["id"])
    assert run["counts"] == {"Succeeded": 1}
    assert run["scheduled_for"] == pytest.approx(at.timestamp(), abs=0.01)
    shown = fleet.api.get(f"/api/schedules/{schedule['id']}")
    assert shown["next_fire_at"] is None and shown["fired_count"] == 1
    # and it does not fire again, however long the NS keeps running
    time.sleep(5)
    assert len(schedule_runs(fleet.api, schedule["id"])) == 1


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_two_ns_replicas_fire_each_occurrence_once(fleet: Fleet) -> None:
    # Given two NS replicas on one PostgreSQL database, both firing schedules
    b = fleet.start_replica("ns-b")
    lab(fleet, ["pc-1"])
    # When a schedule fires every 2 seconds for about 12 seconds, created through B
    every_2s = b.api.post(
        "/api/schedules",
        {"task": "hello", "targets": ["Lab"], "cron": "* * * * * */2", "live": True},
    )
    time.sleep(12)
    fleet.api.post(f"/api/schedules/{every_2s['id']}/pause")
    time.sleep(3)  # a round that claimed it before the pause has committed

    # Then no occurrence made two runs, and the runs account for the six or so
    # occurrences (a round late under load fires once for those it missed: coalesced)
    runs = schedule_runs(fleet.api, every_2s["id"])
    occurrences = [r["scheduled_for"] for r in runs]
    assert len(occurrences) == len(set(occurrences)), runs
    accounted = sum(1 + r["coalesced"] for r in runs)
    assert len(runs) >= 2 and 5 <= accounted <= 9, [
        (r["scheduled_for"], r["coalesced"]) for r in runs
    ]
    # and each run reached the agent once
    for run in runs:
        assert fleet.wait_run(run["id"])["counts"] == {"Succeeded": 1}
    assert b.api.get(f"/api/schedules/{every_2s['id']}")["fired_count"] == len(runs)


def window_from_now(start_s: float, length_s: float) -> str:
    opens = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=start_s)
    closes = opens + dt.timedelta(seconds=length_s)
    return (
        f"{DAYS[opens.weekday()]} {opens:%H:%M:%S}-{DAYS[closes.weekday()]} {closes:%H:%M:%S} UTC"
    )


def test_a_run_waits_for_the_maintenance_window_and_is_delivered_when_it_opens(
    fleet: Fleet,
) -> None:
    # Given agents polling every 5 minutes, and Lab's window opening in 30 seconds
    lab(fleet, ["pc-1", "pc-2"])
    lab_id = fleet.api.get("/api/collections", params={"name": "Lab"})[0]["id"]
    window = window_from_now(30, 3600)
    shown = fleet.api.call("PUT", f"/api/collections/{lab_id}/windows", json={"windows": [window]})
    assert shown["windows"] == [window] and shown["open_now"] is False
    opens = shown["next_open_at"]
    # When a run starts on Lab, and another on pc-2 that ignores windows
    held = fleet.run("hello", ["Lab"])
    ignoring = fleet.api.post(
        "/api/runs", {"task": "hello", "targets": ["pc-2"], "live": True, "ignore_windows": True}
    )
    # Then the one that ignores windows runs at once, while the other waits
    assert fleet.wait_run(ignoring["id"], timeout=25)["counts"] == {"Succeeded": 1}
    waiting = fleet.api.get(f"/api/runs/{held}")["counts"]
    if time.time() < opens:  # (a very loaded machine may be past it: received_at tells)
        assert waiting == {"Pending": 2}
    # and once the window opens (not before), it is delivered by tickle, not at the next poll
    run = fleet.wait_run(held, timeout=75)
    assert run["counts"] == {"Succeeded": 2}
    received = min(i["received_at"] for i in run["instances"])
    assert opens <= received < opens + 20, (opens, received)


def test_a_run_leaves_out_its_exclusions(fleet: Fleet) -> None:
    # Given three agents in Lab
    lab(fleet, ["pc-1", "pc-2", "pc-3"], poll_minutes=0.2)
    # When a run on Lab excludes pc-2 (through the CLI)
    result = taskfleet(
        fleet, "run", "hello", "--target", "Lab", "--exclude", "pc-2", "--wait", "--json"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Then pc-1 and pc-3 ran it, pc-2 has no instance, and the run shows the exclusion

    run = json.loads(result.stdout)
    assert sorted(i["computer"] for i in run["instances"]) == ["pc-1", "pc-3"]
    assert run["exclude"] == ["pc-2"] and run["targets"] == ["Lab"]
    assert run["counts"] == {"Succeeded": 2}


def test_run_wait_ends_when_a_minimum_count_of_computers_is_done(fleet: Fleet) -> None:
    # Given three agents, one of which is offline
    lab(fleet, ["pc-1", "pc-2", "pc-3"], poll_minutes=0.2)
    fleet.launcher.stop(fleet.agents["pc-3"])
    # When 'run --wait' asks for two computers done
    started = time.monotonic()
    result = taskfleet(
        fleet, "run", "hello", "--target", "Lab", "--wait", "--min-count", "2", "--timeout", "50"
    )
    # Then it ends once two are done, says which requirement ended it, and succeeds
    assert result.returncode == 0, result.stdout + result.stderr
    assert "complete: min_count" in result.stdout
    assert time.monotonic() - started < 45
    runs = fleet.api.get("/api/runs", params={"limit": 1})["runs"]
    assert runs[0]["ended_by"] == "min_count" and runs[0]["counts"].get("Pending") == 1
