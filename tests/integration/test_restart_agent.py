"""R10: the built-in restart-agent task restarts the agent, which drops its stickiness."""

from __future__ import annotations

from taskfleet.cli.launcher import wait_until
from tests.fleet import Fleet


def test_restart_agent_task_moves_agent_to_the_policy_task_server(fleet: Fleet) -> None:
    # Given an agent that got ts-a while it was the only task server
    fleet.start_ts("ts-a")
    fleet.start_agent("pc-1")
    assert fleet.wait_assigned(["pc-1"])["pc-1"]["task_server"] == "ts-a"
    first = fleet.computer("pc-1")["assigned_at"]

    # And a new policy that prefers ts-b (the agent is sticky, so it stays on ts-a)
    fleet.start_ts("ts-b")
    fleet.apply_policy("Lab", "pc-*", ["ts-b", "ts-a"])
    assert fleet.computer("pc-1")["task_server"] == "ts-a"

    # When the built-in restart-agent task runs on it
    run = fleet.wait_run(fleet.run("Restart agent", ["pc-1"]))

    # Then it succeeded once, the same process restarted, and it asked the NS again
    assert run["counts"] == {"Succeeded": 1}
    wait_until(lambda: fleet.computer("pc-1")["task_server"] == "ts-b", 30, "pc-1 on ts-b")
    after = fleet.computer("pc-1")
    assert after["assigned_at"] != first and after["assign_step"] == "policy"
    assert fleet.agents["pc-1"].alive()
    # and it does not run the restart twice
    assert fleet.api.get(f"/api/runs/{run['id']}")["instances"][0]["status_count"] == 3
