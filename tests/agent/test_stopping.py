"""Stopping scripts on the agent: whole process trees killed, never a stranger's process
(agent.process_tree), leftovers of a crash found from the ledger (agent.interrupted),
cancels (agent.cancel) and retries within the timeout (agent.retries)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

import pytest

from taskfleet.agent import interrupted, process_tree, retries
from taskfleet.agent.cancel import Stopper
from taskfleet.agent.outcome import Outcome
from taskfleet.agent.runner import run_script
from taskfleet.protocol.messages import InstanceState

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def alive(pid: int) -> bool:
    found = process_tree.stat(pid)
    return found is not None and (Path(f"/proc/{pid}/status").read_text().find("zombie") < 0)


def wait_gone(pids: list[int], seconds: float = 5.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def script_with_child(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A script in its own session that started a child (Given); the child's pid."""
    pid_file = tmp_path / "child.pid"
    proc = subprocess.Popen(
        ["sh", "-c", f"sleep 60 & echo $! > {pid_file}; wait"], start_new_session=True
    )
    end = time.monotonic() + 5
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < end
        time.sleep(0.02)
    return proc, int(pid_file.read_text())


def test_kill_stops_the_script_and_its_child(tmp_path: Path) -> None:
    proc, child = script_with_child(tmp_path)
    record = process_tree.identify(proc.pid)
    assert set(process_tree.members(record)) >= {proc.pid, child}
    # When the tree is killed, Then both are gone
    assert process_tree.kill(record) >= 2
    proc.wait(5)
    assert wait_gone([child])


def test_a_record_of_another_process_kills_nothing(tmp_path: Path) -> None:
    # Given a live script, and records that do not match it: a later start time (its
    # number reused by another process), another boot
    proc, child = script_with_child(tmp_path)
    try:
        real = process_tree.identify(proc.pid)
        reused = process_tree.Process(proc.pid, real.start + 10**9, real.boot)
        other_boot = process_tree.Process(proc.pid, real.start, "another-boot")
        # Then neither finds or kills anything
        assert process_tree.members(reused) == []
        assert process_tree.kill(other_boot) == 0
        assert alive(proc.pid) and alive(child)
    finally:
        process_tree.kill(process_tree.identify(proc.pid))
        proc.wait(5)


def test_leftovers_of_an_interrupted_instance_are_stopped(tmp_path: Path) -> None:
    # Given the ledger's record of a script an agent started before it was killed
    proc, child = script_with_child(tmp_path)
    interrupted.remember(tmp_path, 42, process_tree.identify(proc.pid))
    # When the agent starts again
    said = interrupted.stop_leftovers(tmp_path, 42)
    # Then the script and its child are gone, the record too, and it says so
    proc.wait(5)
    assert wait_gone([child])
    assert interrupted.REASON in said and "processes) was stopped" in said
    assert interrupted.recorded(tmp_path, 42) is None
    assert "had not started" in interrupted.stop_leftovers(tmp_path, 43)


def test_cancel_kills_a_running_script_with_its_child(tmp_path: Path) -> None:
    async def go() -> None:
        stopper = Stopper(tmp_path)
        pid_file = tmp_path / "child.pid"
        marker = tmp_path / "marker"
        script = f"sleep 30 & echo $! > {pid_file}; sleep 2; touch {marker}; wait"
        running = asyncio.create_task(run_script("sh", script, 60.0, started=stopper.started(7)))
        # (the script may write its child's pid before the runner hands back its own)
        end = time.monotonic() + 10
        while (
            not pid_file.exists()
            or not pid_file.read_text().strip()
            or interrupted.recorded(tmp_path, 7) is None  # on disk while it runs
        ):
            assert time.monotonic() < end, "the script did not start, or was not recorded"
            await asyncio.sleep(0.02)
        # When canceled
        assert stopper.cancel(7) >= 2
        outcome = await asyncio.wait_for(running, 10)
        stopper.ended(7)
        # Then the script ended at once, its child is gone, and it reports Canceled
        assert outcome.return_code == -9
        assert wait_gone([int(pid_file.read_text())])
        state, output, reason = stopper.outcome_of(7, InstanceState.FAILED, outcome.output)
        assert state == InstanceState.CANCELED and reason == "canceled"
        assert "stopped" in (output or "")
        assert interrupted.recorded(tmp_path, 7) is None
        await asyncio.sleep(2.5)
        assert not marker.exists()

    asyncio.run(go())


def test_a_canceled_instance_that_succeeded_first_stays_succeeded(tmp_path: Path) -> None:
    stopper = Stopper(tmp_path)
    stopper.cancel(8)
    assert stopper.outcome_of(8, InstanceState.SUCCEEDED, "ok") == ("Succeeded", "ok", None)
    assert stopper.outcome_of(9, InstanceState.FAILED, "x") == ("Failed", "x", None)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def attempts(
    clock: Clock, states: list[InstanceState], took: float = 1.0
) -> tuple[list[float], object]:
    given: list[float] = []

    async def attempt(timeout_s: float) -> Outcome:
        given.append(timeout_s)
        clock.now += took
        state = states[len(given) - 1]
        return Outcome(state, 0 if state == InstanceState.SUCCEEDED else 1, f"try {len(given)}")

    return given, attempt


def test_retries_back_off_and_keep_each_attempt_summarised() -> None:
    clock = Clock()
    F, S = InstanceState.FAILED, InstanceState.SUCCEEDED
    given, attempt = attempts(clock, [F, F, S])
    result = asyncio.run(
        retries.run(3, 10.0, 600.0, attempt, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]
    )
    assert result.state == S
    assert clock.waits == [10.0, 20.0]  # base, then twice the base
    assert given[0] == 600.0 and given[1] == 600.0 - 11 and given[2] == 600.0 - 32
    assert "attempt 1: Failed, return code 1; output ends: try 1" in result.output
    assert "attempt 2: Failed" in result.output and result.output.endswith("try 3")


def test_retries_stay_inside_the_timeout() -> None:
    # Given a 60 s timeout and a back-off of 40 s: the second wait would end past it
    clock = Clock()
    F = InstanceState.FAILED
    given, attempt = attempts(clock, [F, F, F, F])
    result = asyncio.run(
        retries.run(3, 20.0, 60.0, attempt, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]
    )
    assert len(given) == 2 and clock.waits == [20.0]
    assert clock.now <= 60.0
    assert result.state == F and "not retried" in result.output


def test_no_retry_without_retries_or_after_a_cancel() -> None:
    clock = Clock()
    F = InstanceState.FAILED
    given, attempt = attempts(clock, [F, F])
    result = asyncio.run(retries.run(0, 1.0, 60.0, attempt, clock=clock, sleep=clock.sleep))  # type: ignore[arg-type]
    assert len(given) == 1 and result.output == "try 1"
    given, attempt = attempts(clock, [F, F])
    asyncio.run(
        retries.run(3, 1.0, 60.0, attempt, lambda: True, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]
    )
    assert len(given) == 1


def test_own_pid_is_never_a_member() -> None:
    me = process_tree.identify(os.getpid())
    assert os.getpid() not in process_tree.members(me)
