"""Client jobs on real agents: each computer runs the steps and branches on its own."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import pytest

from taskfleet.cli.launcher import wait_until
from tests.cli.test_cli import taskfleet
from tests.fleet import ApiError, Fleet

# Delivery, status and run lifecycle take different SQL on each store: both run it.
pytestmark = pytest.mark.both_stores


def test_a_client_job_branches_on_each_computer_by_return_code(fleet: Fleet) -> None:
    # Given two agents, and tasks whose result depends on the computer
    fleet.start_ts("ts-1")
    fleet.apply_policy("Lab", "pc-*", ["ts-1"])
    fleet.start_agent("pc-1")
    fleet.start_agent("pc-2")
    fleet.wait_assigned(["pc-1", "pc-2"])
    fleet.create_task("install", 'echo "installing on $TASKFLEET_COMPUTER"\n'
                      '[ "$TASKFLEET_COMPUTER" = pc-2 ] && exit 3\nexit 0')  # fmt: skip
    fleet.create_task("reboot-needed", "echo rebooting later")
    fleet.create_task("check", "echo checked {{computer.name}}")
    # and a job: install; on return code 3 go to step 3; check ends it
    fleet.api.post(
        "/api/jobs",
        {
            "name": "Patch",
            "steps": [
                {"task": "install", "on_code": {"3": "goto:3"}},
                {"task": "check", "on_success": "stop-succeeded"},
                {"task": "reboot-needed"},
                {"task": "check"},
            ],
        },
    )
    # When the job runs on both
    run = fleet.wait_run(fleet.run("Patch", ["pc-1", "pc-2"]))
    # Then both succeeded, each down its own branch
    assert run["task"] == "Patch"
    assert run["counts"] == {"Succeeded": 2}
    output = {i["computer"]: i["output"] for i in run["instances"]}
    assert "── step 1: install — Succeeded, return code 0 ──\ninstalling on pc-1" in output["pc-1"]
    assert "── step 2: check — Succeeded, return code 0 ──\nchecked pc-1" in output["pc-1"]
    assert "rebooting later" not in output["pc-1"]
    assert "── step 1: install — Failed, return code 3 ──" in output["pc-2"]
    assert "── step 3: reboot-needed — Succeeded" in output["pc-2"]
    assert "── step 4: check — Succeeded, return code 0 ──\nchecked pc-2" in output["pc-2"]
    # And each computer's instance shows its steps as records: path, state, return code
    # and output, through the API and run-output
    shown = fleet.api.get(f"/api/runs/{run['id']}/output/pc-2")
    assert [(s["path"], s["name"], s["state"], s["return_code"]) for s in shown["steps"]] == [
        ("1", "install", "Failed", 3),
        ("3", "reboot-needed", "Succeeded", 0),
        ("4", "check", "Succeeded", 0),
    ]
    assert shown["steps"][0]["output"] == "installing on pc-2"
    assert shown["steps"][2]["output"] == "checked pc-2"
    assert [s["path"] for s in fleet.api.get(f"/api/runs/{run['id']}/output/pc-1")["steps"]] == [
        "1",
        "2",
    ]
    printed = taskfleet(fleet, "run-output", str(run["id"]), "pc-2")
    assert printed.returncode == 0, printed.stderr
    table, _ = printed.stdout.split("── step 1:", 1)
    assert "reboot-needed" in table and "Failed" in table and "installing on pc-2" in table
    assert printed.stdout.endswith(shown["output"])

    # When a job's step fails and nothing says go on
    fleet.create_task("broken", "echo broken; exit 5")
    fleet.api.post("/api/jobs", {"name": "Stops", "steps": [{"task": "broken"}, {"task": "check"}]})
    stopped = fleet.wait_run(fleet.run("Stops", ["pc-1"]))
    # Then the instance failed with the step's return code, and the next step never ran
    (instance,) = stopped["instances"]
    assert (instance["state"], instance["return_code"]) == ("Failed", 5)
    assert "step 1 failed" in instance["output"] and "checked" not in instance["output"]
    # And run-list finds the job's runs by its name
    listed = fleet.api.get("/api/runs", params={"task": "Patch"})
    assert [r["id"] for r in listed["runs"]] == [run["id"]]


def test_a_job_that_cannot_run_is_refused_when_the_run_is_made(fleet: Fleet) -> None:
    # Given a 10-minute client job whose step restarts the computer in an hour: the job
    # could never go on after it (restarts that come in time: test_job_power.py)
    fleet.create_task("check", "true")
    later = {"name": "reboot later", "action": "restart", "delay_s": 3600}
    fleet.api.post("/api/tasks/power-control", later)
    steps = [{"task": "reboot later"}, {"task": "check"}]
    fleet.api.post("/api/jobs", {"name": "Bounce", "steps": steps, "timeout_s": 600})
    # When it is run, Then it is refused before anything reaches a computer
    with pytest.raises(ApiError) as ending:
        fleet.run("Bounce", ["pc-1"])
    assert ending.value.status == 400 and "could never go on" in str(ending.value.body)
    # and a name that is neither a task nor a job says where to look
    with pytest.raises(ApiError) as missing:
        fleet.run("Nothing", ["pc-1"])
    assert missing.value.status == 404 and "task or job" in str(missing.value.body)


def test_a_server_job_runs_step_by_step_across_all_targets(fleet: Fleet) -> None:
    # Given two agents and a server job: write a mark, then check that every computer
    # wrote it before any computer checks
    fleet.start_ts("ts-1")
    fleet.apply_policy("Lab", "pc-*", ["ts-1"])
    fleet.start_agent("pc-1")
    fleet.start_agent("pc-2")
    fleet.wait_assigned(["pc-1", "pc-2"])
    marks = fleet.root / "marks"
    marks.mkdir()
    fleet.create_task("mark", f'sleep 1; touch "{marks}/$TASKFLEET_COMPUTER"')
    fleet.create_task("count", f'ls "{marks}" | wc -l')
    fleet.create_task("fail-on-pc-2", '[ "$TASKFLEET_COMPUTER" != pc-2 ]')
    fleet.create_task("never", "echo never")
    fleet.api.post(
        "/api/jobs",
        {"name": "Wave", "kind": "server", "steps": [{"task": "mark"}, {"task": "count"}]},
    )
    # When it runs on both
    run = fleet.wait_run(fleet.run("Wave", ["pc-1", "pc-2"]))
    # Then the second step started only once the first was done everywhere
    assert run["ended_by"] == "job_succeeded"
    assert [s["name"] for s in run["steps"]] == ["mark", "count"]
    assert run["counts"] == {"Succeeded": 2}
    assert {i["output"].strip() for i in run["instances"]} == {"2"}

    # When a step fails on one computer, and nothing says go on
    fleet.api.post(
        "/api/jobs",
        {"name": "Halts", "kind": "server", "steps": [{"task": "fail-on-pc-2"}, {"task": "never"}]},
    )
    halted = fleet.wait_run(fleet.run("Halts", ["pc-1", "pc-2"]))
    # Then the whole job stopped failed after that step, on every computer
    assert halted["ended_by"] == "job_failed"
    assert [s["name"] for s in halted["steps"]] == ["fail-on-pc-2"]
    assert halted["counts"] == {"Succeeded": 1, "Failed": 1}


def test_canceling_a_server_job_stops_its_step_and_ends_the_job(fleet: Fleet) -> None:
    # Given a server job whose first step takes a long time on one computer
    fleet.start_ts("ts-1")
    fleet.apply_policy("Lab", "pc-*", ["ts-1"])
    fleet.start_agent("pc-1")
    fleet.wait_assigned(["pc-1"])
    fleet.create_task("long", "sleep 60")
    fleet.create_task("after", "echo after")
    fleet.api.post(
        "/api/jobs",
        {"name": "Slow", "kind": "server", "steps": [{"task": "long"}, {"task": "after"}]},
    )
    run_id = fleet.run("Slow", ["pc-1"])
    fleet.wait_run(run_id, done=lambda r: r["counts"] == {"Running": 1})
    # When an admin cancels the job's run
    canceled = fleet.api.post(f"/api/runs/{run_id}/cancel", {})
    assert canceled["run_id"] == run_id
    # Then its step's script is stopped, and the job ends canceled without a next step
    run = fleet.wait_run(run_id, timeout=30, done=lambda r: r["counts"] == {"Canceled": 1})
    assert run["ended_by"] == "job_canceled" and run["done"]
    assert [s["name"] for s in run["steps"]] == ["long"]


def test_a_client_job_copies_a_file_then_uses_it(fleet: Fleet, tmp_path: Path) -> None:
    # Given a file on the NS, and a job that copies it to the computer and then reads it
    content = b"job-delivered\n" * 1000
    fleet.api.call("POST", "/api/files", params={"name": "conf"}, content=content)
    fleet.start_ts("ts-1")
    fleet.apply_policy("Lab", "pc-*", ["ts-1"])
    fleet.start_agent("pc-1")
    fleet.wait_assigned(["pc-1"])
    target = tmp_path / "conf.txt"
    fleet.api.post(
        "/api/tasks/copy-file",
        {"name": "copy conf", "file": "conf", "path": str(target), "mode": "0600", "timeout_s": 60},
    )
    fleet.create_task("read conf", f'sha256sum "{target}"')
    fleet.api.post(
        "/api/jobs", {"name": "Deploy", "steps": [{"task": "copy conf"}, {"task": "read conf"}]}
    )
    # When the job runs, Then the task server serves the job's file, and the next step sees it
    run = fleet.wait_run(fleet.run("Deploy", ["pc-1"]))
    (instance,) = run["instances"]
    assert instance["state"] == "Succeeded", instance["output"]
    assert hashlib.sha256(content).hexdigest() in instance["output"]
    assert target.read_bytes() == content


def test_a_job_can_be_scheduled(fleet: Fleet) -> None:
    # Given an agent and a client job
    fleet.start_ts("ts-1")
    fleet.apply_policy("Lab", "pc-*", ["ts-1"])
    fleet.start_agent("pc-1")
    fleet.wait_assigned(["pc-1"])
    fleet.create_task("hello", "echo hello from the schedule")
    fleet.api.post("/api/jobs", {"name": "Nightly", "steps": [{"task": "hello"}]})
    # When it is scheduled two seconds from now
    at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
    made = fleet.api.post(
        "/api/schedules",
        {"task": "Nightly", "targets": ["Lab"], "at": at.isoformat(), "live": True},
    )
    assert made["task"] == "Nightly"

    # Then it fires once, and its run runs the job
    def fired() -> dict[str, Any] | None:
        shown: dict[str, Any] = fleet.api.get(f"/api/schedules/{made['id']}")
        return shown if shown["fired_count"] else None

    shown = wait_until(fired, 30, "the schedule to fire")
    assert isinstance(shown, dict)
    run = fleet.wait_run(shown["last_run_id"])
    assert run["task"] == "Nightly" and run["counts"] == {"Succeeded": 1}
    assert "hello from the schedule" in run["instances"][0]["output"]
