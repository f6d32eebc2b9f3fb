"""Run history with real processes: a script printing 3 MiB, the output limit at every hop,
run-output and run-list from the CLI, and live or buffered as the run's explicit choice."""

from __future__ import annotations

import json

import pytest

from taskfleet.protocol.fields import DEFAULT_OUTPUT_LIMIT, TRUNCATION_MARKER
from tests.cli.test_cli import taskfleet
from tests.fleet import ApiError, Fleet

FLOOD = """
import sys
sys.stdout.write("0123456789abcdef" * (3 * 1024 * 1024 // 16))
"""


def test_three_mib_of_output_is_kept_to_the_limit_and_the_rest_flows_on(fleet: Fleet) -> None:
    # Given two agents behind a task server, a script printing 3 MiB and a small one
    fleet.start_ts("ts-1")
    fleet.apply_policy("Lab", "pc-*", ["ts-1"])
    fleet.start_agent("pc-1")
    fleet.start_agent("pc-2")
    fleet.wait_assigned(["pc-1", "pc-2"])
    fleet.create_task("flood", FLOOD, interpreter="python")
    fleet.create_task("hi", "echo hi from $TASKFLEET_COMPUTER")

    # When the flood runs on pc-1 while the small task runs on pc-2
    flood = fleet.run("flood", ["pc-1"])
    small = fleet.run("hi", ["pc-2"])

    # Then both end, the small one unharmed
    assert fleet.wait_run(small)["counts"] == {"Succeeded": 1}
    assert fleet.wait_run(flood)["counts"] == {"Succeeded": 1}
    # and the stored output is the first 1 MiB plus the marker saying what was dropped
    found = fleet.api.get(f"/api/runs/{flood}/output/pc-1")
    dropped = 3 * 1024 * 1024 - DEFAULT_OUTPUT_LIMIT
    assert found["output"] == (
        "0123456789abcdef" * (DEFAULT_OUTPUT_LIMIT // 16)
        + TRUNCATION_MARKER.format(dropped=dropped)
    )
    assert found["truncated"] is True and found["state"] == "Succeeded"
    assert found["return_code"] == 0 and found["finished_at"] >= found["started_at"] > 0
    # and pc-1's later status still flows (nothing stuck behind the big event)
    after = fleet.run("hi", ["pc-1"])
    assert fleet.wait_run(after)["counts"] == {"Succeeded": 1}
    # and nothing was set aside on the way
    ts = fleet.api.get("/api/taskservers")
    assert all(t.get("dead_letters", 0) == 0 for t in ts), ts

    # When the admin asks the CLI for pc-1's output of the flood
    plain = taskfleet(fleet, "run-output", str(flood), "pc-1")
    # Then it prints the whole output as it is stored, nothing added: fit to pipe
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout == found["output"]
    shown = json.loads(taskfleet(fleet, "run-output", str(flood), "pc-1", "--json").stdout)
    assert {k: shown[k] for k in ("state", "return_code", "computer", "truncated")} == {
        "state": "Succeeded",
        "return_code": 0,
        "computer": "pc-1",
        "truncated": True,
    }
    assert shown["started_at"] and shown["finished_at"] and shown["output"] == found["output"]
    # and a computer the run did not reach is one clear line, not a traceback
    missing = taskfleet(fleet, "run-output", str(small), "pc-1")
    assert missing.returncode != 0 and "did not target 'pc-1'" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_a_smaller_configured_limit_reaches_the_agent(fleet: Fleet) -> None:
    # Given collection Lab configured to keep 64 KiB of output per instance
    fleet.start_ts("ts-1")
    fleet.apply_policy("Lab", "pc-*", ["ts-1"])
    set_limit = taskfleet(fleet, "agent-config", "set", "Lab", "--output-limit-kib", "64")
    assert set_limit.returncode == 0, set_limit.stderr
    assert taskfleet(fleet, "agent-config", "apply").returncode == 0
    fleet.start_agent("pc-1")
    fleet.wait_assigned(["pc-1"])
    fleet.create_task("flood", FLOOD, interpreter="python")

    # When the flood runs
    run_id = fleet.run("flood", ["pc-1"])
    fleet.wait_run(run_id)

    # Then 64 KiB was kept, and the marker says the rest was dropped
    output = fleet.api.get(f"/api/runs/{run_id}/output/pc-1")["output"]
    assert output.startswith("0123456789abcdef" * (64 * 1024 // 16) + "\n[... output truncated")
    assert len(output) < 64 * 1024 + 100


def test_run_list_filters_and_live_or_buffered_from_the_cli(fleet: Fleet) -> None:
    # Given an agent, a task that fails and one that succeeds
    fleet.start_ts("ts-1")
    fleet.apply_policy("Lab", "pc-*", ["ts-1"])
    # (buffered status every 2 s here, not the default minute: the test need not wait)
    entry = {"collection": "Lab", "task_request_interval_min": 5, "send_status_interval_s": 2}
    fleet.api.post("/api/documents/agent-config/draft/entries", {"entry": entry})
    fleet.api.post("/api/documents/agent-config/apply")
    fleet.start_agent("pc-1")
    fleet.wait_assigned(["pc-1"])
    fleet.create_task("ok", "echo fine")
    fleet.create_task("bad", "exit 3")

    # When the admin runs them without --wait and without saying how to report
    started = taskfleet(fleet, "run", "bad", "--target", "pc-1")
    # Then the run reports live (the default), and says so
    assert started.returncode == 0 and "reporting live" in started.stdout, started.stderr
    buffered = taskfleet(fleet, "run", "ok", "--target", "Lab", "--report", "buffered", "--json")
    run_ok = json.loads(buffered.stdout)
    assert run_ok["report"] == "buffered"
    wrong = taskfleet(fleet, "run", "ok", "--target", "Lab", "--report", "sometimes")
    assert wrong.returncode != 0 and "--report 'sometimes'" in wrong.stderr
    fleet.wait_run(run_ok["id"], timeout=120)
    fleet.wait_run(run_ok["id"] - 1)
    assert "reporting buffered" in taskfleet(fleet, "run-status", str(run_ok["id"])).stdout

    # Then run-list filters by state, task, target and time
    def listed(*args: str) -> list[int]:
        out = taskfleet(fleet, "run-list", *args, "--json")
        assert out.returncode == 0, out.stderr
        return [r["id"] for r in json.loads(out.stdout)["runs"]]

    bad_id, ok_id = run_ok["id"] - 1, run_ok["id"]
    assert listed() == [ok_id, bad_id]
    assert listed("--state", "Failed") == [bad_id]
    assert listed("--task", "ok") == [ok_id]
    assert listed("--target", "Lab") == [ok_id]
    assert listed("--target", "pc-1") == [ok_id, bad_id]  # reached through Lab, and by name
    assert listed("--since", "1h") == [ok_id, bad_id]
    assert listed("--until", "2000-01-01") == []
    assert listed("--limit", "1") == [ok_id]
    table = taskfleet(fleet, "run-list", "--state", "Failed").stdout
    assert "bad" in table and "live" in table
    unknown = taskfleet(fleet, "run-list", "--state", "Broken")
    assert unknown.returncode != 0 and "no state 'Broken'" in unknown.stderr
    bad_time = taskfleet(fleet, "run-list", "--since", "yesterday-ish")
    assert bad_time.returncode != 0 and "--since" in bad_time.stderr
    # and the API says which query parameter is wrong, with a 400
    for params, field in [({"since": "soon"}, "since"), ({"state": "Broken"}, "state"),
                          ({"limit": 0}, "limit"), ({"before": -1}, "before")]:  # fmt: skip
        with pytest.raises(ApiError) as refused:
            fleet.api.get("/api/runs", params=params)
        assert refused.value.status == 400 and refused.value.body["field"] == field, params
    # and the report is checked where the run is made
    with pytest.raises(ApiError) as contradicted:
        fleet.api.post("/api/runs", {"task": "ok", "targets": ["Lab"], "report": "buffered",
                                     "live": True})  # fmt: skip
    assert contradicted.value.status == 400 and contradicted.value.body["field"] == "report"
