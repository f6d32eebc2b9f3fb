"""``taskfleet simulate``: simulated agents on the real protocol, each scripted behaviour."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fleet import Fleet

# Hand-made agents (raw enrolment, no certificate) probe something other than TLS,
# which tests/integration/test_tls.py covers: this fleet runs --insecure-http.
pytestmark = pytest.mark.plain_http


SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def simulate(fleet: Fleet, state_dir: Path, *args: str, timeout: float = 90) -> dict[str, Any]:
    env = {
        **os.environ,
        "TASKFLEET_TOKEN": fleet.token("agent"),
        "TASKFLEET_CREDENTIAL": str(fleet.credential_file),
    }
    done = subprocess.run(
        [sys.executable, "-m", "taskfleet", "simulate", "--ns", fleet.ns_url]
        + ["--state-dir", str(state_dir), "--startup-window", "1", "--json", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@SQLITE_ONLY
@pytest.mark.timeout(180)
def test_each_behaviour_ends_its_instances_as_scripted(fleet: Fleet, tmp_path: Path) -> None:
    # Given a task server serving the simulated computers, and a task
    fleet.start_ts("ts-sim")
    fleet.apply_policy("Simulated", "sim-*", ["ts-sim"])
    fleet.create_task("hello", "echo hello")
    # When 12 simulated agents with a mix of behaviours run it
    report = simulate(
        fleet,
        tmp_path / "sim",
        "--agents",
        "12",
        "--behaviour",
        "succeed=4,fail=2,slow=2,offline=2,restart=2",
        "--slow",
        "2",
        "--run",
        "hello",
        "--target",
        "Simulated",
        "--timeout",
        "20",
    )
    # Then the run ended as each behaviour scripts it; offline computers' work waits
    assert report["behaviours"] == {"fail": 2, "offline": 2, "restart": 2, "slow": 2, "succeed": 4}
    assert report["run"]["counts"] == {"Succeeded": 8, "Failed": 2, "Pending": 2}
    assert report["run"]["done"] is False
    # And the timeline covers the ten that were online, tickled before fetching
    timeline = report["timeline"]
    assert timeline["done"]["count"] == 10
    assert timeline["tickled"]["p50"] <= timeline["fetched"]["p50"] <= timeline["done"]["p50"]
    # And the restarting agents asked the NS again for their task server (R4)
    assert report["counters"]["restarts"] == 2
    assert report["assigned"] == 12 + 2
    assert report["enrolled"] == 12

    # When the same fleet is simulated again from its state directory
    again = simulate(fleet, tmp_path / "sim", "--agents", "12", "--duration", "1")
    # Then the agents keep their identities: nobody enrols again
    assert again["enrolled"] == 0
    assert again["assigned"] == 12
    assert again["errors"] == {}


def test_a_bad_behaviour_mix_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "taskfleet", "simulate", "--ns", "http://127.0.0.1:9"]
        + ["--token", "t", "--behaviour", "succeed=90,explode=10"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "unknown behaviour 'explode'" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_simulator_imports_neither_the_ns_nor_storage() -> None:
    # The simulator stands in for agents: it may know the wire protocol, not the servers.
    check = (
        "import sys, taskfleet.simulator.fleet, taskfleet.simulator.report, "
        "taskfleet.cli.simulate\n"
        "bad = sorted(m for m in sys.modules if m.startswith(("
        "'taskfleet.ns', 'taskfleet.storage', 'taskfleet.taskserver', 'sqlalchemy')))\n"
        "print(bad)"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
