"""``taskfleet job``: jobs saved from the command line, checked whole, shown as they are."""

from __future__ import annotations

import json

from tests.cli.test_cli import taskfleet
from tests.fleet import Fleet


def test_a_job_is_saved_shown_edited_and_its_mistakes_refused(fleet: Fleet) -> None:
    # Given three tasks
    for name in ("install", "reboot", "check"):
        fleet.create_task(name, "true")
    # When an admin saves a job from --step options
    made = taskfleet(
        fleet, "job", "create", "Patch",
        "--step", "install,on-code=3010:goto:2,on-failure=stop-failed",
        "--step", "reboot",
        "--step", "check,on-success=stop-succeeded",
        "--timeout", "1800",
    )  # fmt: skip
    # Then it is saved and shown step by step, with names
    assert made.returncode == 0, made.stderr
    assert "job Patch saved (3 steps, client)" in made.stdout
    shown = taskfleet(fleet, "job", "show", "Patch")
    assert shown.returncode == 0, shown.stderr
    assert "task install" in shown.stdout and "3010 → goto:2" in shown.stdout
    as_json = json.loads(taskfleet(fleet, "job", "show", "Patch", "--json").stdout)
    assert [s["name"] for s in as_json["steps"]] == ["install", "reboot", "check"]
    assert as_json["timeout_s"] == 1800

    # When a server job runs it as a nested step
    nested = taskfleet(fleet, "job", "create", "Wave", "--kind", "server", "--step", "job:Patch")
    assert nested.returncode == 0, nested.stderr
    # Then Patch cannot be edited to run Wave: it would contain itself
    cycle = taskfleet(fleet, "job", "edit", "Patch", "--step", "job:Wave")
    assert cycle.returncode != 0
    assert "contain itself" in cycle.stderr and "Traceback" not in cycle.stderr
    # and the job is what it was
    again = json.loads(taskfleet(fleet, "job", "show", "Patch", "--json").stdout)
    assert again["steps"] == as_json["steps"]

    # When a step names what does not exist, or jumps past the end
    for bad, said in (
        (["--step", "nothing"], "no task 'nothing'"),
        (["--step", "install,on-failure=goto:5"], "names step 5"),
        (["--step", "install,on-error=continue"], "is not a condition"),
    ):
        refused = taskfleet(fleet, "job", "create", "Bad", *bad)
        # Then each is refused with what to fix, and nothing is saved
        assert refused.returncode != 0
        assert said in refused.stderr, refused.stderr
    listed = json.loads(taskfleet(fleet, "job", "list", "--json").stdout)
    assert [j["name"] for j in listed] == ["Patch", "Wave"]
    # And a job cannot take a task's name
    clash = taskfleet(fleet, "job", "create", "install", "--step", "check")
    assert clash.returncode != 0 and "share names" in clash.stderr
