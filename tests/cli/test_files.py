"""The CLI tour of files, copy-file, power-control and inventory tasks, and a computer's facts."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.cli.test_cli import taskfleet
from tests.fleet import Fleet


def test_files_and_task_types_from_the_cli(fleet: Fleet, tmp_path: Path) -> None:
    # Given a file on disk
    source = tmp_path / "tool.cfg"
    source.write_bytes(b"a = 1\n" * 1000)
    sha = hashlib.sha256(source.read_bytes()).hexdigest()

    # When it is uploaded, listed and used by a copy-file task
    uploaded = taskfleet(fleet, "file", "upload", str(source))
    assert uploaded.returncode == 0, uploaded.stderr
    assert f"file tool.cfg stored (6000 bytes, SHA-256 {sha})" in uploaded.stdout
    again = taskfleet(fleet, "file", "upload", str(source))
    assert again.returncode == 1 and "exists already" in again.stderr
    made = taskfleet(
        fleet, "task", "copy-file", "deploy", "--file", "tool.cfg", "--path", "/etc/tool.cfg"
    )
    assert made.returncode == 0, made.stderr
    listed = json.loads(taskfleet(fleet, "file", "list", "--json").stdout)
    assert [(f["name"], f["sha256"], f["used_by"]) for f in listed] == [
        ("tool.cfg", sha, ["deploy"])
    ]
    assert "used by: deploy" in taskfleet(fleet, "file", "show", "tool.cfg").stdout
    refused = taskfleet(fleet, "file", "remove", "tool.cfg")
    assert refused.returncode == 1 and "deploy" in refused.stderr

    # And power-control and inventory tasks are made, bad input said in one line
    power = taskfleet(
        fleet, "task", "power", "night", "--action", "restart", "--delay", "300", "--message", "Bye"
    )
    assert power.returncode == 0, power.stderr
    bad = taskfleet(fleet, "task", "power", "x", "--action", "hibernate")
    assert bad.returncode == 1 and "action 'hibernate' is not known" in bad.stderr
    assert taskfleet(fleet, "task", "inventory", "inv").returncode == 0
    shown = json.loads(taskfleet(fleet, "task", "show", "night", "--json").stdout)
    assert shown["params"] == {"action": "restart", "delay_s": 300, "message": "Bye"}


def test_computer_show_lists_the_facts_and_last_inventory(fleet: Fleet) -> None:
    fleet.start_agent("pc-1")
    fleet.wait_assigned(["pc-1"])
    fleet.wait_run(fleet.run("Inventory", ["pc-1"]))
    shown = taskfleet(fleet, "computer", "show", "pc-1").stdout
    assert "cpu_count" in shown and "uptime_s" in shown and "last inventory" in shown
