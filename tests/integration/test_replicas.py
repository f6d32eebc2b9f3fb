"""Two NS replicas on one PostgreSQL database, each with its own task server and agents.

A run created through one replica must reach agents whose task server talks to
the other within a couple of seconds: without the replicas' LISTEN/NOTIFY link
the other task server would hear of it only at its next events re-poll (25 s).
A fleet-wide duty runs on one replica and moves to another when that one stops.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from taskfleet.cli.launcher import Launcher, wait_http, wait_until
from tests.fleet import Api, Fleet
from tests.ports import free_port

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("db_url", ["postgres"], indirect=True),
]
GROUP_A = ["pa-1", "pa-2"]
GROUP_B = ["pb-1", "pb-2"]
# Far below the 25 s a task server waits for events before it asks again anyway.
PROMPT_S = 5.0
DUTY_LINE = "this replica runs the duty 'sweep expired console sessions'"


def timed_run(api: Api, targets: list[str], timeout: float = 60) -> tuple[float, dict[str, Any]]:
    """Create a live run through ``api`` and follow it there until done."""
    started = time.monotonic()
    run_id = api.post("/api/runs", {"task": "quick", "targets": targets, "live": True})["id"]

    def done() -> dict[str, Any] | None:
        run: dict[str, Any] = api.get(f"/api/runs/{run_id}")
        return run if run["done"] else None

    run = wait_until(done, timeout, f"run {run_id}", interval=0.05)
    assert isinstance(run, dict)
    return time.monotonic() - started, run


def test_a_run_created_on_one_replica_reaches_agents_served_through_the_other(
    fleet: Fleet,
) -> None:
    # Given a second NS replica on the same database, which reuses the database's admin
    b = fleet.start_replica("ns-b")
    assert not (fleet.root / "ns-b" / "admin.credential").exists()
    assert "first start" not in b.proc.output()
    assert b.api.get("/api/taskservers") == []
    # and a task server talking to each replica
    fleet.start_ts("ts-a")
    fleet.start_ts("ts-b", ns_url=b.url)
    # with agents that poll only every 5 minutes, so only a tickle brings work soon,
    # each group enrolled through the replica its task server does not talk to
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
    fleet.apply_policy("Group A", "pa-*", ["ts-a"])
    fleet.apply_policy("Group B", "pb-*", ["ts-b"])
    for name in GROUP_A:
        fleet.start_agent(name, ns_url=b.url)
    for name in GROUP_B:
        fleet.start_agent(name)
    assigned = fleet.wait_assigned(GROUP_A + GROUP_B)
    assert {n: r["task_server"] for n, r in assigned.items()} == {
        **dict.fromkeys(GROUP_A, "ts-a"),
        **dict.fromkeys(GROUP_B, "ts-b"),
    }
    fleet.create_task("quick", "echo quick")
    time.sleep(2)  # let their first polls pass

    # When runs are created through replica A for the agents served via replica B, and
    # through B for those served via A, twice each (a run that happened to meet a
    # task server's 25 s re-poll would leave the next one to wait for the following)
    took: dict[str, list[float]] = {"A to ts-b": [], "B to ts-a": []}
    for _ in range(2):
        for direction, api, group in (
            ("A to ts-b", fleet.api, GROUP_B),
            ("B to ts-a", b.api, GROUP_A),
        ):
            seconds, run = timed_run(api, ["Group B" if group == GROUP_B else "Group A"])
            # Then every run succeeds on its agents ...
            assert run["counts"] == {"Succeeded": len(group)}, (direction, run)
            assert {i["computer"] for i in run["instances"]} == set(group)
            took[direction].append(seconds)

    # ... within a couple of seconds each, not at a task server's next re-poll
    slow = {d: [round(s, 2) for s in t] for d, t in took.items() if max(t) >= PROMPT_S}
    assert not slow, f"runs took {took}; over {PROMPT_S} s: {slow}\n{fleet.logs()}"


def _psql(db_url: str, sql: str) -> str:
    result = subprocess.run(
        ["psql", db_url, "-qtAc", sql], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def test_a_fleet_wide_duty_runs_on_one_replica_and_moves_when_it_stops(
    fleet: Fleet, db_url: str
) -> None:
    # Given two replicas, the first started holding the duty
    assert fleet.ns is not None
    first = fleet.ns
    b = fleet.start_replica("ns-b")
    time.sleep(1)  # the second has tried to take the duty at its start
    assert DUTY_LINE in first.output()
    assert DUTY_LINE not in b.proc.output()
    # and an expired console session in the database
    _psql(
        db_url,
        "INSERT INTO console_session (token_hash, user_id, csrf_token, created_at, expires_at) "
        "SELECT 'expired', id, 'csrf', 0, 1 FROM api_user WHERE name = 'admin'",
    )
    assert _psql(db_url, "SELECT count(*) FROM console_session") == "1"

    # When the replica running the duty stops
    fleet.launcher.stop(first)

    # Then the other takes the duty over within seconds, and sweeps the expired session
    wait_until(lambda: DUTY_LINE in b.proc.output(), 15, "the second replica to take the duty")
    wait_until(
        lambda: _psql(db_url, "SELECT count(*) FROM console_session") == "0",
        10,
        "the expired console session to be swept",
    )


def test_replicas_started_together_on_an_empty_database_take_turns_to_set_it_up(
    db_url: str, tmp_path: Path
) -> None:
    # When three replicas start at the same moment on an empty database
    launcher = Launcher(tmp_path / "logs")
    try:
        started = {}
        for name in ("ns-1", "ns-2", "ns-3"):
            port = free_port()
            proc = launcher.start(
                name, "ns", "serve", "--db", db_url, "--bind", f"127.0.0.1:{port}",
                "--data-dir", str(tmp_path / name),
            )  # fmt: skip
            started[name] = (port, proc)
        # Then all of them come up (one migrated, the others waited for it)
        for port, proc in started.values():
            wait_http(f"https://127.0.0.1:{port}/hello", proc, timeout=60)
        # and exactly one created the admin and wrote its credential
        wrote = [n for n in started if (tmp_path / n / "admin.credential").exists()]
        assert len(wrote) == 1, [proc.output()[-2000:] for _, proc in started.values()]
        assert _psql(db_url, "SELECT count(*) FROM api_user") == "1"
    finally:
        launcher.stop_all()
