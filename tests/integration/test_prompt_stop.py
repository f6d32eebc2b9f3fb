"""Stopping promptly: on SIGTERM the NS and task servers answer their open long polls at
once and exit within seconds; agents come back to the restarted task server by
themselves, without failing over (R4)."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import httpx

from taskfleet.cli.launcher import Proc, wait_until
from tests.fleet import Fleet

PROMPT_S = 5.0
LONG_WAIT = "120"  # the agents' channel wait: far longer than a prompt stop


def _stop_time(proc: Proc) -> float:
    started = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    proc.popen.wait(60)
    return time.monotonic() - started


def test_task_server_stops_at_once_and_its_agent_comes_back(fleet: Fleet) -> None:
    # Given an agent holding a long notification channel open on ts-1
    fleet.start_ts("ts-1")
    fleet.apply_policy("Lab", "pc-*", ["ts-1"])
    agent = fleet.start_agent("pc-1", "--channel-wait", LONG_WAIT)
    fleet.wait_assigned(["pc-1"])
    fleet.create_task("hostname", "echo $TASKFLEET_COMPUTER")
    assert fleet.wait_run(fleet.run("hostname", ["pc-1"]), 30)["counts"] == {"Succeeded": 1}
    before = fleet.computer("pc-1")
    failovers = agent.output().count("failing over")
    time.sleep(1)  # the agent parks its next channel

    # When ts-1 gets SIGTERM
    took = _stop_time(fleet.servers["ts-1"].proc)

    # Then it exits within seconds, not after the channel's 120 s
    assert took < PROMPT_S, f"ts-1 took {took:.1f}s to stop\n{fleet.logs()}"

    # And when it is started again, the agent's next run arrives by tickle (its poll
    # interval is 5 minutes), on the same task server, without failing over
    fleet.start_ts("ts-1")
    started = time.monotonic()
    run = fleet.wait_run(fleet.run("hostname", ["pc-1"]), 30)
    assert run["counts"] == {"Succeeded": 1}, run
    assert time.monotonic() - started < 15
    after = fleet.computer("pc-1")
    assert (after["task_server"], after["assigned_at"]) == ("ts-1", before["assigned_at"])
    assert agent.output().count("failing over") == failovers, agent.output()


def test_notification_server_stops_at_once_under_long_polls(fleet: Fleet) -> None:
    # Given an agent the NS serves itself (no task server yet), holding its channel open
    fleet.start_agent("pc-ns", "--channel-wait", LONG_WAIT)
    assert fleet.wait_assigned(["pc-ns"])["pc-ns"]["assign_step"] == "ns-fallback"
    # and a task server waiting on the NS's events long poll
    fleet.start_ts("ts-1")
    # and an admin following a run that is still running ('taskfleet run --wait')
    fleet.create_task("nap", "sleep 60")
    run_id = fleet.run("nap", ["pc-ns"])
    wait_until(
        lambda: fleet.api.get(f"/api/runs/{run_id}")["counts"].get("Running"), 30, "nap running"
    )
    version = fleet.api.get(f"/api/runs/{run_id}/wait", params={"timeout": 0})["version"]
    followed: dict[str, Any] = {}

    def follow() -> None:
        try:
            followed["reply"] = fleet.api.client.get(
                f"/api/runs/{run_id}/wait", params={"since": version, "timeout": 60}
            )
        except httpx.HTTPError as exc:
            followed["reply"] = exc
        followed["at"] = time.monotonic()

    follower = threading.Thread(target=follow)
    follower.start()
    time.sleep(1.5)
    assert "reply" not in followed  # the long poll is parked
    assert fleet.ns is not None

    # When the NS gets SIGTERM
    sent = time.monotonic()
    took = _stop_time(fleet.ns)
    follower.join(10)

    # Then it exits within seconds, not after the events wait or the channel
    assert took < PROMPT_S, f"the NS took {took:.1f}s to stop\n{fleet.logs()}"
    # and the follower was answered at once
    assert followed["at"] - sent < PROMPT_S
    reply = followed["reply"]
    assert isinstance(reply, httpx.Response) and reply.status_code == 200, reply
    assert reply.json()["counts"] == {"Running": 1}
