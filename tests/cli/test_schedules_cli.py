"""'taskfleet schedule ...' and 'taskfleet collection windows' against a real NS."""

from __future__ import annotations

import json

from tests.cli.test_cli import taskfleet
from tests.console.conftest import seed
from tests.fleet import Fleet


def test_schedule_commands_and_their_errors(fleet: Fleet) -> None:
    # Given a task and a collection of two computers
    fleet.create_task("nightly", "echo nightly")
    fleet.api.post("/api/collections", {"name": "Lab", "rules": {"name_pattern": "pc-*"}})
    seed(fleet, 2, prefix="pc")

    # When a schedule is added with a cron that does not parse, or a time in the past
    bad_cron = taskfleet(fleet, "schedule", "add", "nightly", "--target", "Lab", "--cron", "x")
    past = taskfleet(
        fleet, "schedule", "add", "nightly", "--target", "Lab", "--at", "2000-01-01T00:00"
    )
    zone = taskfleet(
        fleet, "run", "nightly", "--target", "Lab", "--cron", "0 3 * * *", "--timezone", "Nowhere"
    )
    # Then each says what is wrong, and nothing is stored
    assert bad_cron.returncode == 1 and "cron 'x' does not parse" in bad_cron.stderr
    assert past.returncode == 1 and "at is in the past" in past.stderr
    assert zone.returncode == 1 and "unknown time zone 'Nowhere'" in zone.stderr
    assert fleet.api.get("/api/schedules") == []

    # When a good one is added (from 'run --cron'), listed, shown, paused, resumed, removed
    added = taskfleet(
        fleet, "run", "nightly", "--target", "Lab", "--exclude", "pc-001", "--cron", "0 3 * * *",
        "--timezone", "Europe/Berlin", "--min-share", "0.9", "--json",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    schedule = json.loads(added.stdout)
    assert schedule["cron"] == "0 3 * * *" and schedule["exclude"] == ["pc-001"]
    assert schedule["requirements"] == {"min_share": 0.9}
    sid = str(schedule["id"])
    listed = taskfleet(fleet, "schedule", "list")
    assert "nightly" in listed.stdout and "cron '0 3 * * *' Europe/Berlin" in listed.stdout
    assert "min_share" in taskfleet(fleet, "schedule", "show", sid).stdout
    assert "paused" in taskfleet(fleet, "schedule", "pause", sid).stdout
    assert fleet.api.get(f"/api/schedules/{sid}")["paused"] is True
    assert "resumed" in taskfleet(fleet, "schedule", "resume", sid).stdout
    assert taskfleet(fleet, "schedule", "remove", sid).returncode == 0
    assert fleet.api.get("/api/schedules") == []
    missing = taskfleet(fleet, "schedule", "show", sid)
    assert missing.returncode == 1 and f"no schedule {sid}" in missing.stderr


def test_collection_windows_are_set_shown_and_cleared(fleet: Fleet) -> None:
    fleet.api.post("/api/collections", {"name": "Lab", "rules": {"name_pattern": "pc-*"}})
    bad = taskfleet(fleet, "collection", "windows", "Lab", "Sat 22:00-Sun 04:00")
    assert bad.returncode == 1 and "write it as" in bad.stderr
    good = taskfleet(
        fleet, "collection", "windows", "Lab", "Sat 22:00-Sun 04:00 Europe/Berlin", "--json"
    )
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["windows"] == ["Sat 22:00-Sun 04:00 Europe/Berlin"]
    shown = taskfleet(fleet, "collection", "windows", "Lab")
    assert "Sat 22:00-Sun 04:00 Europe/Berlin" in shown.stdout
    cleared = taskfleet(fleet, "collection", "windows", "Lab", "--clear")
    assert "no maintenance windows" in cleared.stdout
