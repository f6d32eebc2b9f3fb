"""What the console reads through the NS (issue 10: the console runs no query of its own):
runs in progress, a job run's steps, and log-in sessions, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import time
from typing import Any

from taskfleet.ns import console_sessions, run_queries, run_steps
from taskfleet.ns.users import Role
from taskfleet.protocol.jobs import JobKind
from taskfleet.storage.models import ApiUser, Computer, Instance, Run, Task
from tests.ns.seeded import seeded


def run(db_url: str, check: Any) -> Any:
    return seeded(db_url, seed, check)


async def seed(session: Any) -> dict[str, int]:
    pcs = [Computer(name=f"pc-{i}", hardware_id=f"hw-{i}", enrolled_at=1.0) for i in range(2)]
    task = Task(name="hello", type="run-script", params={}, created_at=1.0)
    session.add_all([*pcs, task])
    await session.flush()
    plan = {"kind": JobKind.SERVER.value, "steps": [{"name": "first"}, {"name": "second"}]}
    done = Run(task_id=task.id, created_at=1.0)
    going = Run(task_id=task.id, created_at=2.0)
    job = Run(job_id=7, plan=plan, created_at=3.0)
    plain_job = Run(job_id=8, created_at=4.0)  # a client job: steps come from agents
    session.add_all([done, going, job, plain_job])
    await session.flush()
    step_1 = Run(task_id=task.id, parent_run_id=job.id, step=0, created_at=3.0, ended_by="x")
    step_2 = Run(task_id=task.id, parent_run_id=job.id, step=1, created_at=3.5)
    session.add_all([step_1, step_2])
    await session.flush()
    for run_, states in (
        (done, ["Succeeded", "Failed"]),
        (going, ["Succeeded", "Running"]),
        (step_1, ["Succeeded", "Succeeded"]),
        (step_2, ["Pending", "Running"]),
    ):
        for pc, state in zip(pcs, states, strict=True):
            session.add(Instance(run_id=run_.id, computer_id=pc.id, state=state))
    session.add(ApiUser(name="ann", role="operator", credential_hash="x", created_at=1.0))
    session.add(
        ApiUser(name="off", role="admin", credential_hash="y", created_at=1.0, disabled=True)
    )
    ids = {"done": done.id, "going": going.id, "job": job.id, "plain_job": plain_job.id}
    return ids | {"step_1": step_1.id, "step_2": step_2.id}


def test_runs_in_progress_are_those_with_an_unfinished_instance(db_url: str) -> None:
    async def check(session: Any, ids: dict[str, int]) -> None:
        # When the dashboard asks for the runs in progress
        found = [r.id for r in await run_queries.in_progress(session)]
        # Then they are the runs with an instance not in a final state, newest first
        assert found == sorted([ids["step_2"], ids["going"]], reverse=True)
        assert [r.id for r in await run_queries.in_progress(session, limit=1)] == found[:1]

    run(db_url, check)


def test_a_server_jobs_steps_carry_their_state_counts(db_url: str) -> None:
    async def check(session: Any, ids: dict[str, int]) -> None:
        # When a server job run's steps are read
        shown = await run_steps.of_run(session, ids["job"])
        # Then each step run comes in order with its instances counted by state
        assert shown.job and shown.by_computer == {}
        assert [(s["run"], s["step"], s["name"], s["counts"]) for s in shown.step_runs] == [
            (ids["step_1"], 1, "first", {"Succeeded": 2}),
            (ids["step_2"], 2, "second", {"Pending": 1, "Running": 1}),
        ]
        # And a client job's run (no step reported) and a task's run have no steps
        client = await run_steps.of_run(session, ids["plain_job"])
        assert client.job and client.step_runs == [] and client.by_computer == {}
        task = await run_steps.of_run(session, ids["done"])
        assert not task.job and task.step_runs == []

    run(db_url, check)


def test_a_console_session_opens_is_read_and_closes(db_url: str) -> None:
    async def check(session: Any, ids: dict[str, int]) -> None:
        # Given a user who proved their password
        ann = await console_sessions.user_named(session, "ann")
        assert ann is not None and await console_sessions.user_named(session, "nobody") is None
        # When a session opens for them, replacing this browser's previous one
        first = await console_sessions.open_session(session, ann, 3600)
        second = await console_sessions.open_session(session, ann, 3600, first.token)
        # Then its token finds who holds it, with its CSRF token; the replaced one is gone
        assert await console_sessions.holder(session, second.token) == second.holder
        assert second.holder.name == "ann" and second.holder.role == Role.OPERATOR
        assert await console_sessions.holder(session, first.token) is None
        assert ann.last_login is not None and ann.last_login <= time.time()
        # And once closed, or when expired, or its user disabled, it finds no one
        await console_sessions.close_session(session, second.token)
        assert await console_sessions.holder(session, second.token) is None
        expired = await console_sessions.open_session(session, ann, -1)
        assert await console_sessions.holder(session, expired.token) is None
        off = await console_sessions.user_named(session, "off")
        assert off is not None
        disabled = await console_sessions.open_session(session, off, 3600)
        assert await console_sessions.holder(session, disabled.token) is None

    run(db_url, check)
