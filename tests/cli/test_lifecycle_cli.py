"""'taskfleet run --expires-in/--expires-at', 'run-cancel' and 'task create --retries'
against a real NS (computers enrolled, no agents running: instances wait)."""

from __future__ import annotations

import json

from tests.cli.test_cli import taskfleet
from tests.console.conftest import seed
from tests.fleet import Fleet


def test_expiry_cancel_and_retries_from_the_cli(fleet: Fleet) -> None:
    # Given two computers and a task with retries
    seed(fleet, 2, prefix="pc")
    made = taskfleet(
        fleet, "task", "create", "patch", "--script", "echo hi", "--retries", "2",
        "--retry-backoff", "1m", "--json",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert (json.loads(made.stdout)["retries"], json.loads(made.stdout)["retry_backoff_s"]) == (
        2,
        60,
    )
    bad = taskfleet(fleet, "task", "create", "x", "--script", "true", "--retries", "11")
    assert bad.returncode == 1 and "retries" in bad.stderr

    # When a run is given an expiry that is not an age, or in the past
    wrong = taskfleet(fleet, "run", "patch", "--target", "pc-000", "--expires-in", "soon")
    past = taskfleet(
        fleet, "run", "patch", "--target", "pc-000", "--expires-at", "2000-01-01T00:00"
    )
    # Then each says what is wrong, and no run is made
    assert wrong.returncode == 1 and "--expires-in 'soon'" in wrong.stderr
    assert (
        past.returncode == 1 and "expires_at" in past.stderr and "not in the future" in past.stderr
    )
    assert fleet.api.get("/api/runs")["runs"] == []

    # When a run with a 2 h expiry is made, then one computer's instance is canceled
    started = taskfleet(
        fleet, "run", "patch", "--target", "pc-000", "--target", "pc-001", "--expires-in", "2h",
        "--json",
    )  # fmt: skip
    run = json.loads(started.stdout)
    assert 7190 < run["expires_at"] - run["created_at"] <= 7200
    one = taskfleet(fleet, "run-cancel", str(run["id"]), "--computer", "pc-000")
    assert one.returncode == 0 and "1 pending withdrawn" in one.stdout, one.stderr
    # Then run-status shows it Canceled, saying who, and the other still Pending
    status = taskfleet(fleet, "run-status", str(run["id"]))
    assert "Canceled (canceled by admin)" in status.stdout and "Pending" in status.stdout
    # and cancelling the rest, or a computer the run does not hold, says so
    rest = taskfleet(fleet, "run-cancel", str(run["id"]), "--json")
    assert json.loads(rest.stdout) == {
        "run_id": run["id"], "withdrawn": 1, "stopping": 0, "finished": 1,
    }  # fmt: skip
    seed(fleet, 1, prefix="other")
    stranger = taskfleet(fleet, "run-cancel", str(run["id"]), "--computer", "other-000")
    assert stranger.returncode == 1 and "has no instance on computer" in stranger.stderr
    missing = taskfleet(fleet, "run-cancel", "999")
    assert missing.returncode == 1 and "no run 999" in missing.stderr
