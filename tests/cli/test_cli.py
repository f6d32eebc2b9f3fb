"""The admin CLI against a real NS: tables by default, JSON with --json, one-line failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.fleet import Fleet


def taskfleet(
    fleet: Fleet, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TASKFLEET_NS": fleet.ns_url,
        "TASKFLEET_CREDENTIAL": str(fleet.credential_file),
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "taskfleet", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_admin_tour_with_tables_and_json(fleet: Fleet) -> None:
    # Given a task server and an agent
    fleet.start_ts("ts-a")
    fleet.start_agent("pc-1")
    fleet.wait_assigned(["pc-1"])

    # When the admin builds a collection, a policy and a task, and runs it with --wait
    assert taskfleet(fleet, "collection", "create", "Lab", "--name-pattern", "pc-*").returncode == 0
    assert taskfleet(fleet, "policy", "set", "Lab", "ts-a").returncode == 0
    shown = taskfleet(fleet, "policy", "show")
    assert "Unapplied changes" in shown.stdout and "ts-a" in shown.stdout
    assert taskfleet(fleet, "policy", "apply").returncode == 0
    assert "Unapplied" not in taskfleet(fleet, "policy", "show").stdout
    assert (
        taskfleet(fleet, "agent-config", "set", "Lab", "--task-request-interval", "2").returncode
        == 0
    )
    assert taskfleet(fleet, "agent-config", "apply", "--json").returncode == 0
    assert taskfleet(fleet, "task", "create", "hi", "--script", "echo hi there").returncode == 0
    waited = taskfleet(fleet, "run", "hi", "--target", "Lab", "--wait")

    # Then it exits 0 with the results in a table, and everything is readable as JSON
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert "hi there" in waited.stdout and "Succeeded" in waited.stdout
    computers = json.loads(taskfleet(fleet, "computer", "list", "--json").stdout)
    assert {c["name"] for c in computers["computers"]} >= {"pc-1", "ts-a"}
    shown = json.loads(taskfleet(fleet, "computer", "show", "pc-1", "--json").stdout)
    assert shown["collections"] == ["All Computers", "Lab"]
    assert shown["runs"][0]["state"] == "Succeeded"
    table = taskfleet(fleet, "computer", "show", "pc-1").stdout
    assert "why" in table and "ts-a" in table
    servers = json.loads(taskfleet(fleet, "taskserver", "list", "--json").stdout)
    assert servers[0]["name"] == "ts-a" and servers[0]["available"] is True
    versions = json.loads(taskfleet(fleet, "policy", "show", "--json").stdout)
    assert versions["applied"]["version"] == 1
    run_status = json.loads(taskfleet(fleet, "run-status", "1", "--json").stdout)
    assert run_status["counts"] == {"Succeeded": 1}


def test_policy_editing_steps_from_the_cli(fleet: Fleet) -> None:
    # Given two task servers
    fleet.start_ts("ts-a")
    fleet.start_ts("ts-b")
    # When the admin adds, moves and removes task servers and lists, step by step
    for step in (
        ["add", "All Computers", "ts-a"],
        ["add", "All Computers", "ts-b"],
        ["add", "Task Servers", "ts-a"],
        ["move", "All Computers", "ts-b", "up"],
        ["move-collection", "Task Servers", "up"],
        ["remove", "Task Servers", "ts-a"],
    ):
        done = taskfleet(fleet, "policy", *step)
        assert done.returncode == 0, done.stdout + done.stderr
    # Then the draft is as the steps leave it (the emptied list gone), not yet applied
    shown = json.loads(taskfleet(fleet, "policy", "show", "--json").stdout)
    assert shown["draft"]["entries"] == [
        {"collection": "All Computers", "task_servers": ["ts-b", "ts-a"]}
    ]
    assert shown["unapplied"] is True
    # And a mistaken step fails with one line that says why
    again = taskfleet(fleet, "policy", "add", "All Computers", "ts-a")
    assert again.returncode != 0 and "on the list for 'All Computers' already" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


def test_failures_exit_non_zero_with_one_line(fleet: Fleet) -> None:
    for args, expected in [
        (["computer", "show", "nope"], "no computer 'nope'"),
        (["run", "nope", "--target", "All Computers"], "no task or job 'nope'"),
        (["taskserver", "approve", "nope"], "no task server 'nope'"),
        (["agent-config", "set", "All Computers", "--task-request-interval", "-1"], "between"),
    ]:
        result = taskfleet(fleet, *args)
        assert result.returncode != 0
        assert result.stderr.startswith("taskfleet: ") and expected in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.stderr


def test_missing_credential_says_where_to_find_it(fleet: Fleet) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TASKFLEET_CREDENTIAL"}
    result = subprocess.run(
        [sys.executable, "-m", "taskfleet", "--ns", fleet.ns_url, "computer", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1 and "admin.credential" in result.stderr
