"""Nothing stuck, with real processes (issue 9): an offline computer's instance expires,
a running script is canceled with its child, and an agent killed with kill -9 in the
middle of a script stops what is left of it when it comes back."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from taskfleet.agent import process_tree
from taskfleet.cli.launcher import wait_until
from tests.fleet import Fleet, elapsed

# Delivery, status and run lifecycle take different SQL on each store: both run it.
pytestmark = pytest.mark.both_stores


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "zombie" not in status


def read_pid(path: Path) -> int:
    text = path.read_text().strip() if path.exists() else ""
    return int(text) if text else 0


def marked_script(tmp: Path, sleep_s: int) -> str:
    """A script that notes each start, records its pid and a child's, sleeps, then
    writes a marker file: the marker appears only if nobody stopped it."""
    return (
        f"echo started >> {tmp}/starts\n"
        f"echo $$ > {tmp}/script.pid\n"
        f"sleep 120 &\n"
        f"echo $! > {tmp}/child.pid\n"
        f"sleep {sleep_s}\n"
        f"touch {tmp}/marker\n"
    )


def instance(fleet: Fleet, run_id: int, computer: str) -> dict[str, Any]:
    run = fleet.api.get(f"/api/runs/{run_id}")
    found: dict[str, Any] = next(i for i in run["instances"] if i["computer"] == computer)
    return found


def one_agent(fleet: Fleet, *names: str) -> None:
    fleet.start_ts("ts-1")
    fleet.apply_policy("Lab", "pc-*", ["ts-1"])
    for name in names:
        fleet.start_agent(name)
    fleet.wait_assigned(list(names))


def test_an_offline_computers_instance_expires_and_never_runs(fleet: Fleet, tmp_path: Path) -> None:
    # Given pc-1, assigned to ts-1 and then switched off
    one_agent(fleet, "pc-1")
    fleet.launcher.stop(fleet.agents["pc-1"])
    fleet.create_task("mark", f"touch {tmp_path}/marker")
    # (an expiry in the past, or not a number, is refused naming the field; no run made)
    for bad, field in (
        ({"expires_in_s": -5}, "expires_in_s"),
        ({"expires_at": time.time() - 60}, "expires_at"),
        ({"expires_in_s": "soon"}, "expires_in_s"),
    ):
        reply = fleet.api.client.post(
            "/api/runs", json={"task": "mark", "targets": ["pc-1"], **bad}
        )
        assert reply.status_code == 400 and reply.json()["field"] == field, reply.text
    assert fleet.api.get("/api/runs")["runs"] == []
    # When a run on it expires in 3 s
    run = fleet.api.post("/api/runs", {"task": "mark", "targets": ["pc-1"], "expires_in_s": 3})
    assert run["expires_at"] > time.time()
    assert instance(fleet, run["id"], "pc-1")["state"] == "Pending"  # it waits for pc-1
    # Then the NS ends the instance Expired, saying why
    done = fleet.wait_run(run["id"], timeout=60)
    expired = done["instances"][0]
    assert expired["state"] == "Expired" and "expired" in expired["reason"]
    # and when pc-1 comes back, it does not run it
    fleet.start_agent("pc-1")
    time.sleep(8)
    assert not (tmp_path / "marker").exists()
    assert instance(fleet, run["id"], "pc-1")["state"] == "Expired"


def test_cancel_stops_a_running_script_and_its_child(fleet: Fleet, tmp_path: Path) -> None:
    # Given a script running on pc-1 that started a child, and pc-2 offline
    one_agent(fleet, "pc-1", "pc-2")
    fleet.launcher.stop(fleet.agents["pc-2"])
    fleet.create_task("long", marked_script(tmp_path, 20), timeout_s=300)
    run_id = fleet.run("long", ["pc-1", "pc-2"])
    wait_until(lambda: read_pid(tmp_path / "child.pid"), 60, "the script's child started")
    script, child = read_pid(tmp_path / "script.pid"), read_pid(tmp_path / "child.pid")
    assert alive(script) and alive(child)
    wait_until(lambda: instance(fleet, run_id, "pc-1")["state"] == "Running", 30, "Running")

    # When the run is canceled
    asked = time.monotonic()
    reply = fleet.api.post(f"/api/runs/{run_id}/cancel", {})
    assert reply == {"run_id": run_id, "withdrawn": 1, "stopping": 1, "finished": 0}

    # Then pc-2's pending instance is withdrawn at once
    assert instance(fleet, run_id, "pc-2")["state"] == "Canceled"
    # and pc-1's script and its child are gone, the instance Canceled, within seconds
    done = fleet.wait_run(run_id, timeout=30)
    took = elapsed(asked)
    states = {i["computer"]: (i["state"], i["reason"]) for i in done["instances"]}
    assert states["pc-1"] == ("Canceled", "canceled by admin"), done
    assert states["pc-2"] == ("Canceled", "canceled by admin")
    assert took < 15, took  # one tickle, not a task request interval (5 minutes)
    wait_until(lambda: not alive(script) and not alive(child), 5, "script and child gone")
    time.sleep(21 - min(20.0, took))
    assert not (tmp_path / "marker").exists()
    # and the cancel is in the audit log
    assert fleet.api.get("/api/audit", params={"action": "run.cancel"})


def test_agent_killed_mid_script_stops_it_when_it_restarts(fleet: Fleet, tmp_path: Path) -> None:
    # Given a script running on pc-1 that started a child
    one_agent(fleet, "pc-1")
    fleet.create_task("long", marked_script(tmp_path, 25), timeout_s=300)
    run_id = fleet.run("long", ["pc-1"])
    wait_until(lambda: read_pid(tmp_path / "child.pid"), 60, "the script's child started")
    script, child = read_pid(tmp_path / "script.pid"), read_pid(tmp_path / "child.pid")
    started = time.monotonic()

    # When the agent is killed with kill -9: the script runs on, unwatched
    fleet.launcher.kill(fleet.agents["pc-1"])
    time.sleep(1)
    assert alive(script) and alive(child)
    assert process_tree.stat(script) is not None
    # and the agent starts again
    fleet.start_agent("pc-1")

    # Then the instance ends Failed, saying the agent restarted during the run
    done = fleet.wait_run(run_id, timeout=60)
    ended = done["instances"][0]
    assert ended["state"] == "Failed", done
    assert ended["reason"] == "agent restarted during the run"
    # the script and its child are gone, and the marker never appears
    wait_until(lambda: not alive(script) and not alive(child), 10, "script and child gone")
    time.sleep(max(0.0, 27 - elapsed(started)))
    assert not (tmp_path / "marker").exists()
    # and the task did not run again
    time.sleep(3)
    assert (tmp_path / "starts").read_text().count("started") == 1
    assert fleet.api.get(f"/api/runs/{run_id}")["instances"][0]["state"] == "Failed"


def test_a_failing_script_is_retried_with_back_off(fleet: Fleet, tmp_path: Path) -> None:
    # Given a task that fails twice, then succeeds, with 2 retries 1 s apart
    one_agent(fleet, "pc-1")
    script = (
        f"echo try >> {tmp_path}/tries\n"
        f'[ "$(wc -l < {tmp_path}/tries)" -ge 3 ] && echo third && exit 0\n'
        "echo not yet; exit 3\n"
    )
    body = {"name": "flaky", "script": script, "timeout_s": 60, "retries": 2}
    task = fleet.api.post("/api/tasks", {**body, "retry_backoff_s": 1})
    assert (task["retries"], task["retry_backoff_s"]) == (2, 1)
    # (a bad value is refused naming the field, and nothing is saved)
    reply = fleet.api.client.post("/api/tasks", json={**body, "name": "x", "retries": 99})
    assert reply.status_code == 400 and reply.json()["field"] == "retries", reply.text
    # When it runs
    done = fleet.wait_run(fleet.run("flaky", ["pc-1"]), timeout=60)
    # Then it ran three times on the one instance, and says how each attempt ended
    ended = done["instances"][0]
    assert ended["state"] == "Succeeded", done
    assert (tmp_path / "tries").read_text().count("try") == 3
    assert "attempt 1: Failed, return code 3" in ended["output"]
    assert "attempt 2: Failed" in ended["output"] and "third" in ended["output"]
