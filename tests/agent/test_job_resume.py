"""Client jobs with restart-agent and power-control steps: the job's progress is kept
before the step acts, and the agent that starts next resumes the job after that step.

The step runner stands in for the task types' code: a restart step "stops the agent"
by raising ``AgentStopped`` out of the walk, as the agent's stop cancels it.
"""

from __future__ import annotations

import asyncio
import stat
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from taskfleet.agent import client_jobs, job_resume, process_tree
from taskfleet.agent.client_jobs import Paused
from taskfleet.agent.outcome import Outcome, succeeded
from taskfleet.agent.service import Agent, AgentOptions
from taskfleet.protocol.messages import InstanceState, WorkItem

OK = InstanceState.SUCCEEDED


class AgentStopped(Exception):
    """The agent stopped under the walk (a restart)."""


def script(name: str, **conditions: Any) -> dict[str, Any]:
    return {"name": name, "task_type": "run-script", "params": {"script": name}, "timeout_s": 60,
            **conditions}  # fmt: skip


def restart_agent(name: str = "restart", **conditions: Any) -> dict[str, Any]:
    return {"name": name, "task_type": "restart-agent", "params": {}, "timeout_s": 60,
            **conditions}  # fmt: skip


def power(action: str = "restart") -> dict[str, Any]:
    return {"name": "reboot", "task_type": "power-control", "timeout_s": 60,
            "params": {"action": action, "delay_s": 0, "message": ""}}  # fmt: skip


def job_item(steps: list[dict[str, Any]], instance_id: int = 7) -> WorkItem:
    return WorkItem(instance_id, 3, "job", {"timeout_s": 600, "steps": steps}, 600)


class Computer:
    """Runs steps: scripts succeed with their name as output; a restart-agent step stops
    the agent; power control in test mode succeeds in place."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.kept: list[Paused | None] = []

    def keep(self, paused: Paused | None) -> None:
        self.kept.append(paused)

    async def run_step(self, sub: WorkItem) -> Outcome:
        self.ran.append(sub.task_type if sub.task_type != "run-script" else sub.params["script"])
        if sub.task_type == "restart-agent":
            raise AgentStopped
        if sub.task_type == "power-control":
            return succeeded("test mode: recorded restart now")
        return Outcome(OK, 0, f"{sub.params['script']} out")

    def walk(self, item: WorkItem, resume: Paused | None = None) -> Outcome:
        return asyncio.run(client_jobs.run(item, self.run_step, self.keep, resume))


def restarted(paused: Paused | None) -> Paused:
    assert paused is not None
    return replace(paused, outcome=succeeded("the agent restarted; the job went on after it"))


def test_a_job_paused_by_its_restart_step_resumes_at_the_next_step() -> None:
    # Given a job "install; restart the agent; check" whose restart stops the agent
    item = job_item([script("install"), restart_agent(), script("check")])
    before = Computer()
    with pytest.raises(AgentStopped):
        before.walk(item)
    # Then the job's progress was kept just before the restart: step 2, step 1's output
    (paused,) = before.kept
    assert before.ran == ["install", "restart-agent"]
    assert paused is not None and paused.path == [1]
    assert "── step 1: install — Succeeded" in paused.sections[0]
    assert paused.deadline_at > time.time() + 500

    # When the agent that starts next resumes it
    after = Computer()
    outcome = after.walk(item, restarted(paused))
    # Then only the step after the restart runs, and the job succeeds with all three steps
    assert after.ran == ["check"] and after.kept == []
    assert outcome.state == OK
    assert "── step 1: install — Succeeded, return code 0 ──\ninstall out" in outcome.output
    assert "── step 2: restart — Succeeded, return code 0 ──" in outcome.output
    assert "agent restarted" in outcome.output
    assert "── step 3: check — Succeeded, return code 0 ──\ncheck out" in outcome.output
    # and its step records hold the steps from before the restart too
    assert outcome.steps is not None
    assert [(s["path"], s["state"]) for s in outcome.steps] == [
        ("1", "Succeeded"),
        ("2", "Succeeded"),
        ("3", "Succeeded"),
    ]


def test_a_restart_as_the_last_step_ends_the_job_succeeded_after_the_restart() -> None:
    item = job_item([script("install"), restart_agent()])
    before = Computer()
    with pytest.raises(AgentStopped):
        before.walk(item)
    after = Computer()
    outcome = after.walk(item, restarted(before.kept[0]))
    assert after.ran == [] and outcome.state == OK
    assert "it was the last step" in outcome.output


def test_the_restart_step_s_conditions_decide_after_the_restart() -> None:
    # Given a restart step that says stop-succeeded, so step 3 never runs
    item = job_item([script("a"), restart_agent(on_success="stop-succeeded"), script("never")])
    before = Computer()
    with pytest.raises(AgentStopped):
        before.walk(item)
    after = Computer()
    outcome = after.walk(item, restarted(before.kept[0]))
    assert after.ran == [] and outcome.state == OK and "stop-succeeded" in outcome.output


def test_a_restart_inside_a_nested_job_resumes_inside_it() -> None:
    # Given step 2 is a job "inner-install; restart; inner-check", then an outer step 3
    steps = [script("inner-install"), restart_agent(), script("inner-check")]
    nested = {"timeout_s": 300, "steps": steps}
    item = job_item([script("a"), {"name": "Reboot-and-check", "job": nested}, script("b")])
    before = Computer()
    with pytest.raises(AgentStopped):
        before.walk(item)
    assert before.kept[0] is not None and before.kept[0].path == [1, 1]
    after = Computer()
    outcome = after.walk(item, restarted(before.kept[0]))
    assert after.ran == ["inner-check", "b"] and outcome.state == OK
    assert "── step 2.2: restart — Succeeded" in outcome.output
    assert "── step 2: Reboot-and-check — Succeeded" in outcome.output
    # and the nested job's record comes before its steps', those before the restart too
    assert outcome.steps is not None
    assert [s["path"] for s in outcome.steps] == ["1", "2", "2.1", "2.2", "2.3", "3"]


def test_power_control_in_test_mode_goes_on_and_clears_what_was_kept() -> None:
    item = job_item([script("install"), power(), script("check")])
    computer = Computer()
    outcome = computer.walk(item)
    assert computer.ran == ["install", "power-control", "check"] and outcome.state == OK
    # kept before the step, cleared once it went on in the same process
    assert len(computer.kept) == 2 and computer.kept[0] is not None and computer.kept[1] is None


def test_a_progress_file_round_trips_and_says_how_the_step_ended(tmp_path: Path) -> None:
    item = job_item([script("install"), power(), script("check")])
    record = {"path": "1", "name": "install", "state": "Succeeded", "return_code": 0}
    paused = Paused([1], 2, ["── step 1 ──\nout"], time.time() + 300, records=[record])
    job_resume.keep(tmp_path, item, paused)
    assert stat.S_IMODE((tmp_path / "7.job").stat().st_mode) == 0o600  # may hold secrets
    saved = job_resume.load(tmp_path, 7)
    assert saved is not None and saved.item == item and saved.paused == paused
    assert job_resume.step_of(saved)["task_type"] == "power-control"
    # A real restart ordered but not happened (same boot): wait; another boot: it did
    if saved.boot:
        assert job_resume.after_restart(saved, saved.boot) is None
    assert job_resume.after_restart(saved, "another-boot") is not None
    assert job_resume.after_restart(replace(saved, test_mode=True), saved.boot) is not None
    # A restart-agent step ended as soon as the agent runs again
    agent_item = job_item([restart_agent()])
    job_resume.keep(tmp_path, agent_item, Paused([0], 1, [], time.time() + 300))
    again = job_resume.load(tmp_path, 7)
    assert again is not None
    ended = job_resume.after_restart(again, process_tree.boot_id())
    assert ended is not None and ended.state == OK
    # Cleared: nothing to resume
    job_resume.keep(tmp_path, agent_item, None)
    assert job_resume.load(tmp_path, 7) is None


def test_a_wait_for_a_restart_ends_at_the_deadline_or_on_cancel() -> None:
    timed_out = asyncio.run(job_resume.wait_for_restart(time.time() + 0.2, lambda: False))
    assert timed_out.state == InstanceState.TIMED_OUT and "did not restart" in timed_out.output
    canceled = asyncio.run(job_resume.wait_for_restart(time.time() + 30, lambda: True))
    assert canceled.state == InstanceState.CANCELED


def test_the_agent_resumes_a_paused_job_but_fails_one_killed_mid_script(tmp_path: Path) -> None:
    # Given an agent's state: instance 7 paused for its restart step, instance 8 cut off
    agent = Agent(AgentOptions("http://127.0.0.1:9", tmp_path, insecure_http=True))
    item = job_item([script("install"), restart_agent(), script("check")])
    agent.ledger.record(7, InstanceState.RUNNING)
    job_resume.keep(agent.ledger.directory, item, Paused([1], 2, [], time.time() + 300))
    agent.ledger.record(8, InstanceState.RUNNING)
    failed: list[int] = []
    agent.status.report = lambda instance_id, *a, **k: failed.append(instance_id)  # type: ignore[method-assign]
    # When it starts
    agent.instances.recover()
    # Then 7 waits to be resumed (not failed); 8 is failed as before
    assert [s.item.instance_id for s in agent.instances.resuming] == [7]
    assert failed == [8] and agent.ledger.state(8) == InstanceState.FAILED
    assert agent.ledger.state(7) == InstanceState.RUNNING

    # When it resumes 7: the kept file is gone before the next step runs (a crash in
    # that step fails the instance, never runs the step twice), and only "check" runs
    ran: list[str] = []

    async def run_step(sub: WorkItem) -> Outcome:
        assert job_resume.load(agent.ledger.directory, 7) is None
        ran.append(sub.params["script"])
        return Outcome(OK, 0, "checked")

    agent.tasks.step = run_step  # type: ignore[method-assign,assignment]
    outcome = asyncio.run(agent.tasks.job(item, agent.instances.resuming[0]))
    assert ran == ["check"] and outcome.state == OK
    assert "── step 2: restart — Succeeded" in outcome.output


def _fake_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: int = 0) -> Path:
    """``shutdown``, ``wall`` and ``loginctl`` that only note their arguments."""
    calls = tmp_path / "calls"
    for name in ("shutdown", "wall", "loginctl"):
        fake = tmp_path / name
        fake.write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\nexit {status}\n')
        fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    return calls


def _power_step(action: str, timeout_s: float) -> tuple[Outcome, int]:
    flushes = 0

    async def flush() -> None:
        nonlocal flushes
        flushes += 1

    item = WorkItem(7, 3, "power-control", {"action": action, "delay_s": 0}, timeout_s)
    ended = asyncio.run(job_resume.power_step(item, None, flush, lambda: False))
    return ended, flushes


@pytest.mark.skipif(not Path("/proc").exists(), reason="the Linux commands")
def test_a_real_restart_step_orders_it_once_then_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a computer whose restart command returns but the computer never goes down
    calls = _fake_commands(tmp_path, monkeypatch)
    # When a job's restart step runs with 0.5 s left in the job
    ended, flushes = _power_step("restart", 0.5)
    # Then status was sent first, the command ran once, and the step waited for the
    # restart until the job's time ran out
    assert flushes == 1 and calls.read_text() == "shutdown -r now\n"
    assert ended.state == InstanceState.TIMED_OUT and "did not restart" in ended.output


@pytest.mark.skipif(not Path("/proc").exists(), reason="the Linux commands")
def test_a_log_off_or_a_failed_restart_goes_on_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_commands(tmp_path, monkeypatch)
    logged_off, _ = _power_step("logoff", 30)
    assert logged_off.state == OK  # the agent outlives a log off: the job goes on
    _fake_commands(tmp_path, monkeypatch, status=1)
    refused, _ = _power_step("restart", 30)
    assert refused.state == InstanceState.FAILED  # its on_failure decides, no wait
