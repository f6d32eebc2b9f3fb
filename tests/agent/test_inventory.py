"""The facts an agent collects and when it sends its inventory."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from taskfleet.agent import inventory


def test_the_built_in_facts_and_measurements(tmp_path: Path) -> None:
    facts = inventory.gather("pc-1", "hw-1", ["10.1.2.3/24"], tmp_path / "none.json")
    assert facts.name == "pc-1" and facts.addresses == ["10.1.2.3/24"]
    assert facts.facts["hostname"] == socket.gethostname()
    assert facts.facts["cpu_count"] == str(os.cpu_count())
    assert int(facts.facts["memory_bytes"]) > 0
    assert facts.facts["os_name"] and facts.facts["os_release"] and facts.facts["python"]
    assert "python" in facts.interpreters and facts.agent_version
    # every fact fits the wire's bounds (protocol.messages.Facts)
    assert all(len(k) <= 255 and len(v) <= 255 for k, v in facts.facts.items())
    report = inventory.report(facts)
    assert report.uptime_s is not None and report.uptime_s > 0
    assert report.disk_free_bytes is not None and report.disk_free_bytes > 0
    assert report.memory_available_bytes is not None and report.memory_available_bytes > 0


def test_custom_facts_join_but_never_replace_the_built_in_ones(tmp_path: Path) -> None:
    path = tmp_path / "facts.json"
    path.write_text(json.dumps({"role": "web", "hostname": "lie", "n": 3}))
    facts = inventory.gather("pc-1", "hw-1", None, path)
    assert facts.facts["role"] == "web"
    assert facts.facts["hostname"] == socket.gethostname()
    assert "n" not in facts.facts  # not text: left out
    path.write_text("{not json")
    assert "role" not in inventory.gather("pc-1", "hw-1", None, path).facts


def test_a_report_is_due_at_once_then_after_the_interval(tmp_path: Path) -> None:
    schedule = inventory.Schedule(tmp_path)
    assert schedule.due_in(3600, 1000.0) == 0.0  # never sent: at once (enrolment)
    schedule.sent(1000.0)
    assert schedule.due_in(3600, 1600.0) == 3000.0
    assert inventory.Schedule(tmp_path).due_in(3600, 5000.0) == 0.0  # kept across restarts
