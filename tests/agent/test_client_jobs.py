"""Client jobs on the agent: steps run in order and branch by their conditions.

The step runner here stands in for the task types' own code (scripts, copy file...),
which their tests and the real-process tests cover; what is tested is the walk.
"""

from __future__ import annotations

import asyncio
from typing import Any

from taskfleet.agent import client_jobs
from taskfleet.agent.outcome import Outcome
from taskfleet.protocol import step_records
from taskfleet.protocol.messages import InstanceState, WorkItem

OK, FAILED, TIMED_OUT = InstanceState.SUCCEEDED, InstanceState.FAILED, InstanceState.TIMED_OUT


def step(name: str, **conditions: Any) -> dict[str, Any]:
    return {"name": name, "task_type": "run-script", "params": {"script": name}, "timeout_s": 60,
            **conditions}  # fmt: skip


def job_item(steps: list[dict[str, Any]], timeout_s: float = 60) -> WorkItem:
    return WorkItem(7, 3, "job", {"timeout_s": timeout_s, "steps": steps}, timeout_s)


def walk(item: WorkItem, results: dict[str, list[Outcome]]) -> tuple[Outcome, list[str]]:
    """Run ``item`` where each step named N ends as ``results[N]`` says, in turn."""
    ran: list[str] = []

    async def run_step(sub: WorkItem) -> Outcome:
        name = sub.params["script"]
        ran.append(name)
        assert sub.instance_id == item.instance_id and sub.run_id == item.run_id
        if name == "sleep":
            await asyncio.sleep(sub.timeout_s)
            return Outcome(TIMED_OUT, None, "killed")
        return results[name].pop(0) if len(results[name]) > 1 else results[name][0]

    return asyncio.run(client_jobs.run(item, run_step)), ran


def test_steps_run_in_order_and_the_last_success_ends_the_job() -> None:
    outcome, ran = walk(
        job_item([step("a"), step("b")]),
        {"a": [Outcome(OK, 0, "A out")], "b": [Outcome(OK, 0, "B out")]},
    )
    assert ran == ["a", "b"]
    assert outcome.state == OK
    # The instance's output holds every step's state, return code and output
    assert "── step 1: a — Succeeded, return code 0 ──\nA out" in outcome.output
    assert "── step 2: b — Succeeded, return code 0 ──\nB out" in outcome.output


def test_a_failure_stops_the_job_unless_its_condition_says_otherwise() -> None:
    results = {"a": [Outcome(FAILED, 2, "")], "b": [Outcome(OK, 0, "")]}
    stopped, ran = walk(job_item([step("a"), step("b")]), results)
    assert (stopped.state, ran) == (FAILED, ["a"])
    assert "step 1 failed" in stopped.output
    went_on, ran = walk(job_item([step("a", on_failure="continue"), step("b")]), results)
    assert (went_on.state, ran) == (OK, ["a", "b"])


def test_a_return_code_branches_and_goto_may_go_back() -> None:
    # Given: install returns 3010 (reboot needed) the first time, 0 the second
    steps = [
        step("install", on_code={"3010": "goto:3"}),
        step("done", on_success="stop-succeeded"),
        step("reboot", on_success="goto:1"),
    ]
    results = {
        "install": [Outcome(FAILED, 3010, ""), Outcome(OK, 0, "")],
        "reboot": [Outcome(OK, 0, "")],
        "done": [Outcome(OK, 0, "")],
    }
    outcome, ran = walk(job_item(steps), results)
    assert ran == ["install", "reboot", "install", "done"]
    assert outcome.state == OK


def test_a_nested_job_is_one_step_of_the_outer_one() -> None:
    inner = {"name": "inner", "job": {"timeout_s": 60, "steps": [step("x"), step("y")]},
             "on_failure": "continue"}  # fmt: skip
    results = {"x": [Outcome(OK, 0, "")], "y": [Outcome(FAILED, 1, "Y broke")],
               "z": [Outcome(OK, 0, "")]}  # fmt: skip
    outcome, ran = walk(job_item([inner, step("z")]), results)
    assert ran == ["x", "y", "z"]
    assert outcome.state == OK
    assert "── step 1.2: y — Failed, return code 1 ──\nY broke" in outcome.output
    assert "── step 1: inner — Failed, return code 1 ──" in outcome.output


def test_the_jobs_timeout_ends_it_timed_out_whatever_step_it_is_in() -> None:
    outcome, ran = walk(
        job_item([step("a"), step("sleep"), step("b")], timeout_s=0.3),
        {"a": [Outcome(OK, 0, "")], "b": [Outcome(OK, 0, "")]},
    )
    assert ran == ["a", "sleep"]
    assert outcome.state == TIMED_OUT
    assert "timeout ran out in step 2" in outcome.output


def test_an_endless_goto_loop_ends_failed() -> None:
    outcome, ran = walk(job_item([step("a", on_success="goto:1")]), {"a": [Outcome(OK, 0, "")]})
    assert outcome.state == FAILED
    assert "without ending" in outcome.output
    assert len(ran) == client_jobs.MAX_STEP_EXECUTIONS


def test_a_plan_the_agent_cannot_follow_fails_with_the_reason() -> None:
    outcome, ran = walk(job_item([step("a", on_failure="retry")]), {"a": [Outcome(OK, 0, "")]})
    assert outcome.state == FAILED and ran == []
    assert "cannot run" in outcome.output and "retry" in outcome.output


def test_each_step_run_is_recorded_with_its_path_state_return_code_and_output() -> None:
    # Given a job whose first step fails with 3010 and goes to a nested job, which runs
    # two steps, then the job ends
    inner = {"name": "inner", "job": {"timeout_s": 60, "steps": [step("x"), step("y")]}}
    steps = [step("install", on_code={"3010": "goto:2"}), inner]
    results = {"install": [Outcome(FAILED, 3010, "reboot needed\n")],
               "x": [Outcome(OK, 0, "X out")], "y": [Outcome(OK, 0, "y" * 40_000)]}  # fmt: skip

    # When it runs
    outcome, ran = walk(job_item(steps), results)

    # Then one record per step run, in order, a nested job's own record before its steps'
    assert ran == ["install", "x", "y"] and outcome.state == OK
    assert outcome.steps is not None
    assert [(s["path"], s["name"], s["state"], s["return_code"]) for s in outcome.steps] == [
        ("1", "install", "Failed", 3010),
        ("2", "inner", "Succeeded", 0),
        ("2.1", "x", "Succeeded", 0),
        ("2.2", "y", "Succeeded", 0),
    ]
    assert outcome.steps[0]["output"] == "reboot needed"
    assert outcome.steps[2]["output"] == "X out"
    # And a long output is cut in its record (the text output keeps it whole)
    assert len(outcome.steps[3]["output"]) < step_records.STEP_OUTPUT_LIMIT + 200
    assert "output truncated by taskfleet" in outcome.steps[3]["output"]
    assert "y" * 40_000 in outcome.output
    # And the records pass the NS's check as they are
    assert step_records.checked(outcome.steps).refused == []


def test_a_goto_loop_reports_its_last_step_records_only() -> None:
    outcome, ran = walk(job_item([step("a", on_success="goto:1")]), {"a": [Outcome(OK, 0, "")]})
    assert outcome.state == FAILED and outcome.steps is not None
    assert len(outcome.steps) == step_records.MAX_STEP_RECORDS
    assert {s["path"] for s in outcome.steps} == {"1"}
