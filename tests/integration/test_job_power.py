"""Jobs with restart-agent and power-control steps, on real agents: "install, then
restart, then check" as an administrator runs it."""

from __future__ import annotations

import json
from pathlib import Path

from taskfleet.cli.launcher import wait_until
from tests.fleet import Fleet


def _serve(fleet: Fleet, *agent_args: str) -> None:
    fleet.start_ts("ts-1")
    fleet.apply_policy("Lab", "pc-*", ["ts-1"])
    fleet.start_agent("pc-1", *agent_args)
    fleet.wait_assigned(["pc-1"])


def test_a_client_job_goes_on_after_its_restart_agent_step(fleet: Fleet) -> None:
    # Given an agent, and a client job "install; restart the agent; check"
    _serve(fleet)
    agent, first = fleet.agents["pc-1"], fleet.computer("pc-1")["assigned_at"]
    fleet.create_task("install", "echo installed")
    fleet.create_task("check", "echo checked")
    steps = [{"task": "install"}, {"task": "Restart agent"}, {"task": "check"}]
    fleet.api.post("/api/jobs", {"name": "Patch", "steps": steps})

    # When it runs
    run = fleet.wait_run(fleet.run("Patch", ["pc-1"]), timeout=90)

    # Then the one instance succeeded with all three steps, the restart recorded Succeeded
    (instance,) = run["instances"]
    assert instance["state"] == "Succeeded", instance
    output = instance["output"]
    assert "── step 1: install — Succeeded, return code 0 ──\ninstalled" in output
    assert "── step 2: Restart agent — Succeeded, return code 0 ──" in output
    assert "agent restarted" in output
    assert "── step 3: check — Succeeded, return code 0 ──\nchecked" in output
    assert "it was the last step" in output
    # and the agent really restarted (its process started afresh by exec, R10): it asked
    # the NS for its task server again
    assert agent.alive()
    assert agent.output().count("taskfleet agent pc-1: task server ts-1") == 2, agent.output()
    assert fleet.computer("pc-1")["assigned_at"] != first
    # Each step ran once, and the instance was not failed on the way
    assert output.count("installed") == 1 and output.count("checked\n") == 1
    assert "agent restarted during the run" not in output
    # And nothing is left to resume
    state = fleet.root / "agents" / "pc-1" / "instances"
    assert not list(state.glob("*.job"))


def test_a_job_whose_restart_is_its_last_step_succeeds_after_the_restart(fleet: Fleet) -> None:
    _serve(fleet)
    fleet.create_task("install", "echo installed")
    steps = [{"task": "install"}, {"task": "Restart agent"}]
    fleet.api.post("/api/jobs", {"name": "Install and restart", "steps": steps})
    run = fleet.wait_run(fleet.run("Install and restart", ["pc-1"]), timeout=90)
    (instance,) = run["instances"]
    assert instance["state"] == "Succeeded", instance
    assert "── step 2: Restart agent — Succeeded" in instance["output"]


def test_jobs_with_a_power_control_step_in_test_mode(fleet: Fleet, tmp_path: Path) -> None:
    # Given an agent in power-control test mode, and a restart task
    record = tmp_path / "power.jsonl"
    _serve(fleet, "--power-test-file", str(record))
    fleet.api.post(
        "/api/tasks/power-control",
        {"name": "reboot", "action": "restart", "delay_s": 0, "message": "patched"},
    )
    fleet.create_task("install", "echo installed")
    fleet.create_task("check", "echo checked")
    steps = [{"task": "install"}, {"task": "reboot"}, {"task": "check"}]

    # When a server job "install; restart the computer; check" runs
    fleet.api.post("/api/jobs", {"name": "Wave", "kind": "server", "steps": steps})
    server = fleet.wait_run(fleet.run("Wave", ["pc-1"]), timeout=90)
    # Then the restart was a step run like any: recorded, Succeeded, and the job went on
    assert server["ended_by"] == "job_succeeded", server
    assert [s["name"] for s in server["steps"]] == ["install", "reboot", "check"]
    assert all(s["ended_by"] is not None for s in server["steps"]), server["steps"]
    (line,) = [json.loads(x) for x in record.read_text().splitlines()]
    assert line["action"] == "restart" and line["commands"] == [
        ["shutdown", "-r", "now", "patched"]
    ]

    # When the same steps run as a client job
    fleet.api.post("/api/jobs", {"name": "Patch", "steps": steps})
    client = fleet.wait_run(fleet.run("Patch", ["pc-1"]), timeout=60)
    # Then the restart was recorded and the job simply went on
    (instance,) = client["instances"]
    assert instance["state"] == "Succeeded", instance
    assert (
        "── step 2: reboot — Succeeded, return code 0 ──\ntaskfleet: test mode"
        in (instance["output"])
    )
    assert "── step 3: check — Succeeded, return code 0 ──\nchecked" in instance["output"]
    assert len(record.read_text().splitlines()) == 2


def test_a_job_killed_mid_script_after_its_restart_still_ends_failed(
    fleet: Fleet, tmp_path: Path
) -> None:
    # Given a client job "restart the agent; a long script", the script running in the
    # restarted agent
    _serve(fleet)
    fleet.create_task("long", f"echo started >> {tmp_path}/starts; sleep 60", timeout_s=300)
    fleet.api.post(
        "/api/jobs", {"name": "Bounce", "steps": [{"task": "Restart agent"}, {"task": "long"}]}
    )
    run_id = fleet.run("Bounce", ["pc-1"])
    wait_until(lambda: (tmp_path / "starts").exists(), 60, "the script after the restart")
    # When the agent is killed with kill -9 mid-script, and started again
    fleet.launcher.kill(fleet.agents["pc-1"])
    fleet.start_agent("pc-1")
    # Then the job is not resumed again: the instance ends Failed as any interrupted one,
    # and the script never ran twice
    run = fleet.wait_run(run_id, timeout=60)
    (instance,) = run["instances"]
    assert instance["state"] == "Failed", instance
    assert instance["reason"] == "agent restarted during the run"
    assert (tmp_path / "starts").read_text() == "started\n"


def test_a_server_job_goes_on_after_its_restart_agent_step(fleet: Fleet) -> None:
    # Given a server job "restart the agent; check" on one computer
    _serve(fleet)
    fleet.create_task("check", "echo checked")
    steps = [{"task": "Restart agent"}, {"task": "check"}]
    fleet.api.post("/api/jobs", {"name": "Bounce", "kind": "server", "steps": steps})
    # When it runs, Then the restart step ends Succeeded and the check runs after it
    run = fleet.wait_run(fleet.run("Bounce", ["pc-1"]), timeout=90)
    assert run["ended_by"] == "job_succeeded", run
    assert [s["name"] for s in run["steps"]] == ["Restart agent", "check"]
    (instance,) = run["instances"]
    assert instance["output"].strip() == "checked"
    assert fleet.agents["pc-1"].output().count("taskfleet agent pc-1: task server ts-1") == 2
