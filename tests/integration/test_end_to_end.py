"""End to end with real processes: NS + 2 task servers + 3 agents (R3, R4, R6, R8)."""

from __future__ import annotations

import time

import pytest

from tests.fleet import Fleet

# Delivery, status and run lifecycle take different SQL on each store: both run it.
pytestmark = pytest.mark.both_stores

AGENTS = ["pc-1", "pc-2", "pc-3"]


def test_script_reaches_every_agent_then_failover_after_sigkill(fleet: Fleet) -> None:
    # Given two approved task servers, a policy listing ts-a then ts-b, and three agents
    fleet.start_ts("ts-a")
    fleet.start_ts("ts-b")
    fleet.apply_policy("Lab", "pc-*", ["ts-a", "ts-b"])
    for name in AGENTS:
        fleet.start_agent(name)
    assigned = fleet.wait_assigned(AGENTS)
    assert {row["task_server"] for row in assigned.values()} == {"ts-a"}
    assert all(row["assign_step"] == "policy" for row in assigned.values())

    # When a script runs on the collection
    fleet.create_task("hello", 'echo "hello from $TASKFLEET_COMPUTER via $TASKFLEET_TASK_SERVER"')
    run = fleet.wait_run(fleet.run("hello", ["Lab"]))

    # Then every result and its output arrives
    assert run["counts"] == {"Succeeded": 3}
    outputs = {i["computer"]: i["output"].strip() for i in run["instances"]}
    assert outputs == {n: f"hello from {n} via ts-a" for n in AGENTS}

    # When the first task server is killed without warning
    fleet.launcher.kill(fleet.servers["ts-a"].proc)

    # Then the agents fail over to the second, and the next run succeeds there
    def moved() -> bool:
        return all(fleet.computer(n)["task_server"] == "ts-b" for n in AGENTS)

    from taskfleet.cli.launcher import wait_until

    wait_until(moved, 60, "agents to fail over to ts-b")
    for name in AGENTS:
        assert "failover" in fleet.computer(name)["assign_reason"]
    run = fleet.wait_run(fleet.run("hello", ["Lab"]), timeout=60)
    assert run["counts"] == {"Succeeded": 3}
    assert {i["output"].strip().rsplit(" ", 1)[-1] for i in run["instances"]} == {"ts-b"}


def test_tickle_starts_a_run_well_under_the_task_request_interval(fleet: Fleet) -> None:
    # Given agents polling only every 5 minutes
    fleet.start_ts("ts-a")
    fleet.api.post(
        "/api/documents/agent-config/draft/entries",
        {
            "entry": {
                "collection": "All Computers",
                "task_request_interval_min": 5,
                "send_status_interval_s": 60,
            }
        },
    )
    fleet.api.post("/api/documents/agent-config/apply")
    for name in AGENTS:
        fleet.start_agent(name)
    fleet.wait_assigned(AGENTS)
    time.sleep(2)  # let their first poll pass, so only a tickle can bring the work
    fleet.create_task("quick", "echo quick")

    # When a run starts (live, as 'taskfleet run --wait' asks)
    started = time.monotonic()
    run_id = fleet.run("quick", AGENTS)
    run = fleet.wait_run(run_id, timeout=60)
    took = time.monotonic() - started

    # Then it finished in seconds, not the 300 s interval
    assert run["counts"] == {"Succeeded": 3}
    assert took < 15, f"run took {took:.1f}s; the tickle did not work"
