"""Heartbeats never starve behind bulk traffic: a task server whose status relay and work
fetch are stuck at the NS keeps heartbeating, and stays available (R2)."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import httpx
import pytest

from taskfleet.cli.launcher import wait_until
from tests.conftest import PG_HOST, PG_PORT
from tests.fleet import Fleet

# Hand-made agents (raw enrolment, no certificate) probe something other than TLS,
# which tests/integration/test_tls.py covers: this fleet runs --insecure-http.
pytestmark = [pytest.mark.postgres, pytest.mark.plain_http]
AGENTS = 20
LOCK_S = 12


def heartbeat_of(fleet: Fleet, name: str) -> tuple[float, bool]:
    rows = {r["name"]: r for r in fleet.api.get("/api/taskservers")}
    return rows[name]["last_heartbeat"] or 0.0, rows[name]["available"]


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
@pytest.mark.timeout(180)
def test_heartbeats_go_on_while_status_and_work_calls_wait_at_the_ns(
    fleet: Fleet, db_url: str
) -> None:
    # Given a task server serving 20 computers by policy, each with an instance of a run
    ts = fleet.start_ts("ts-a", "--heartbeat", "1")
    fleet.apply_policy("Lab", "pc-*", ["ts-a"])
    token = fleet.token("agent")
    computers = []
    with httpx.Client(base_url=fleet.ns_url) as client:
        for n in range(AGENTS):
            facts = {"name": f"pc-{n:02d}", "hardware_id": f"hw-pc-{n:02d}"}
            enrolled = client.post("/api/agent/enrol", json={"token": token, "facts": facts})
            header = {"Authorization": f"Bearer {enrolled.json()['credential']}"}
            client.post("/api/agent/assignment", json={"facts": facts}, headers=header)
            computers.append(enrolled.json()["computer_id"])
    fleet.create_task("hello", "echo hello")
    run_id = fleet.run("hello", ["Lab"])
    instances = {
        i["computer_id"]: i["instance_id"]
        for i in fleet.wait_run(run_id, timeout=10, done=lambda r: len(r["instances"]) == AGENTS)[
            "instances"
        ]
    }

    # And, while it is stopped, its spool holds a status backlog for all of them
    fleet.launcher.stop(ts.proc)
    events = [
        {
            "id": uuid.uuid4().hex,
            "instance_id": instances[c],
            "computer_id": c,
            "state": "Succeeded",
            "at": time.time(),
            "return_code": 0,
            "output": "hello\n",
            "live": True,
        }
        for c in computers
    ]
    (ts.data_dir / "spool" / "00000000000000000001-backlog.json").write_text(json.dumps(events))

    # When the instance table is locked at the NS (a slow database), so the relay's status
    # batch and the work fetch both wait there, and the task server starts again
    database = db_url.rsplit("/", 1)[1]
    locked_until = time.monotonic() + LOCK_S
    lock = subprocess.Popen(
        [
            "psql",
            "-h",
            PG_HOST,
            "-p",
            str(PG_PORT),
            "-U",
            "postgres",
            "-d",
            database,
            "-qc",
            f"BEGIN; LOCK TABLE instance IN EXCLUSIVE MODE; SELECT pg_sleep({LOCK_S}); COMMIT;",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        fleet.start_ts("ts-a", "--heartbeat", "1", approve=False)
        # Then its heartbeats keep arriving while the bulk calls are stuck
        seen = set()
        while time.monotonic() < locked_until - 1.5:
            at, available = heartbeat_of(fleet, "ts-a")
            assert available, "the task server went stale behind its own bulk traffic"
            seen.add(at)
            time.sleep(0.5)
        assert len(seen) >= 3, f"only {len(seen)} heartbeats while the NS was slow"
        assert fleet.api.get(f"/api/runs/{run_id}")["counts"] == {"Pending": AGENTS}
    finally:
        lock.wait(30)

    # And once the database answers again, the backlog arrives whole
    run = fleet.wait_run(run_id, timeout=30)
    assert run["counts"] == {"Succeeded": AGENTS}
    wait_until(lambda: heartbeat_of(fleet, "ts-a")[1], 10, "ts-a available")
