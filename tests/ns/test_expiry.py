"""Nothing stuck, in the database, on SQLite and PostgreSQL alike: runs' expiry and
instances' deadlines (ns.expiry), and the stop notices of canceled instances (ns.cancel)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import select

from taskfleet.errors import InvalidInput
from taskfleet.ns import cancel, expiry
from taskfleet.storage import database, migrate
from taskfleet.storage.models import Computer, Instance, Run, Task

NOW = 1_800_000_000.0
GRACE = 300.0
Tx = Callable[[], contextlib.AbstractAsyncContextManager[Any]]


def given(db_url: str, check: Callable[[Tx], Awaitable[None]]) -> None:
    """A task with a 60 s timeout, computers 1-3 (1 and 2 on task server 7), and two
    runs: run 1 expired a minute ago, run 2 expires tomorrow."""

    async def go() -> None:
        engine = database.create_engine(db_url)
        try:
            await migrate.upgrade(engine)
            sessions = database.sessionmaker(engine)

            @contextlib.asynccontextmanager
            async def tx() -> AsyncIterator[Any]:
                async with sessions() as session, session.begin():
                    yield session

            async with tx() as session:
                session.add(Task(id=1, name="t", type="run-script", timeout_s=60.0, created_at=1))
                await session.flush()
                session.add_all(
                    Computer(id=i, name=f"pc-{i}", hardware_id=f"h{i}", enrolled_at=1.0,
                             task_server_id=7 if i < 3 else None)
                    for i in (1, 2, 3)
                )  # fmt: skip
                session.add(
                    Run(id=1, task_id=1, targets=[], created_at=NOW - 9, expires_at=NOW - 60)
                )
                session.add(
                    Run(id=2, task_id=1, targets=[], created_at=NOW, expires_at=NOW + 86400)
                )
            await check(tx)
        finally:
            await engine.dispose()

    asyncio.run(go())


async def add(tx: Tx, *instances: Instance) -> None:
    async with tx() as session:
        session.add_all(instances)


async def states(tx: Tx) -> dict[int, tuple[str, str | None]]:
    async with tx() as session:
        rows = await session.execute(select(Instance.id, Instance.state, Instance.reason))
        return {r.id: (r.state, r.reason) for r in rows.all()}


def test_pending_instances_of_an_expired_run_end_expired(db_url: str) -> None:
    async def check(tx: Tx) -> None:
        # Given: run 1 (expired) has a pending instance never handed out (pc-3, offline),
        # one its task server holds (pc-1), one running; run 2 (not expired) one pending
        await add(
            tx,
            Instance(id=11, run_id=1, computer_id=3, state="Pending"),
            Instance(id=12, run_id=1, computer_id=1, state="Pending", delivered_at=NOW - 5),
            Instance(id=13, run_id=1, computer_id=2, state="Running", received_at=NOW - 5),
            Instance(id=21, run_id=2, computer_id=3, state="Pending"),
        )
        # When the duty runs
        async with tx() as session:
            ended = await expiry.sweep(session, GRACE, now=NOW)
        # Then only the expired run's pending ones end Expired, with the reason
        found = await states(tx)
        assert found[11] == ("Expired", expiry.EXPIRED_REASON)
        assert found[12] == ("Expired", expiry.EXPIRED_REASON)
        assert found[13] == ("Running", None)
        assert found[21] == ("Pending", None)
        assert ended.expired == 2 and ended.runs == {1}
        # and the task server holding one of them is told to drop it
        assert ended.notify == [(1, 7)]
        async with tx() as session:
            assert await cancel.notices_waiting(session, 7, 120.0)
            refs = await cancel.take_notices(session, 120.0, task_server_id=7)
        assert [(r.computer_id, r.instance_id) for r in refs] == [(1, 12)]
        async with tx() as session:  # handed once: an ended instance is not sent again
            assert not await cancel.notices_waiting(session, 7, 120.0)
        async with tx() as session:  # and it leaves the index of notices owed
            await expiry.settle_notices(session)
            assert (await session.get(Instance, 12)).cancel_at is None  # type: ignore[union-attr]
        # And a second round changes nothing (replicas overlapping)
        async with tx() as session:
            again = await expiry.sweep(session, GRACE, now=NOW + 1)
        assert again.expired == 0 and await states(tx) == found

    given(db_url, check)


def test_an_instance_past_its_deadline_ends_timed_out(db_url: str) -> None:
    async def check(tx: Tx) -> None:
        # Given instances received 60 + 300 s + 1 ago (overdue) and 60 + 300 - 1 s ago
        late, early = NOW - 60 - GRACE - 1, NOW - 60 - GRACE + 1
        await add(
            tx,
            Instance(id=21, run_id=2, computer_id=1, state="Running", received_at=late),
            Instance(id=22, run_id=2, computer_id=2, state="Received", received_at=early),
            Instance(id=23, run_id=2, computer_id=3, state="Succeeded", received_at=late),
        )
        # When the duty runs
        async with tx() as session:
            ended = await expiry.sweep(session, GRACE, now=NOW)
        # Then the overdue one is TimedOut with the reason; the others are untouched
        found = await states(tx)
        assert found[21][0] == "TimedOut" and "timed out" in (found[21][1] or "")
        assert found[22] == ("Received", None)
        assert found[23] == ("Succeeded", None)
        assert ended.timed_out == 1 and ended.runs == {2}

    given(db_url, check)


def test_a_cancel_the_agent_never_confirms_ends_canceled_after_the_grace(db_url: str) -> None:
    async def check(tx: Tx) -> None:
        # Given two running instances canceled by admin: one long ago, one just now
        await add(
            tx,
            Instance(id=21, run_id=2, computer_id=1, state="Running", received_at=NOW - 1,
                     cancel_at=NOW - GRACE - 1, reason="canceled by admin"),
            Instance(id=22, run_id=2, computer_id=2, state="Running", received_at=NOW - 1,
                     cancel_at=NOW - 1, reason="canceled by admin"),
        )  # fmt: skip
        # Then the task server is owed both notices, and again after redelivery time
        async with tx() as session:
            refs = await cancel.take_notices(session, 120.0, task_server_id=7)
        assert sorted(r.instance_id for r in refs) == [21, 22]
        async with tx() as session:
            assert not await cancel.notices_waiting(session, 7, 120.0)
            assert await cancel.notices_waiting(session, 7, -1.0)  # still held: resent
        # When the duty runs
        async with tx() as session:
            ended = await expiry.sweep(session, GRACE, now=NOW)
        # Then the old cancel ends Canceled, saying the agent did not confirm
        found = await states(tx)
        assert found[21] == (
            "Canceled",
            "canceled by admin; the agent did not confirm it stopped",
        )
        assert found[22] == ("Running", "canceled by admin")
        assert ended.canceled == 1

    given(db_url, check)


def test_a_run_expiry_is_in_the_future() -> None:
    assert expiry.expires_at(NOW) == NOW + expiry.DEFAULT_EXPIRY_S
    assert expiry.expires_at(NOW, 7200.0) == NOW + 7200
    assert expiry.expires_at(NOW, at=NOW + 60) == NOW + 60
    for kwargs, field in (
        ({"expires_in_s": -1.0}, "expires_in_s"),
        ({"expires_in_s": 0.0}, "expires_in_s"),
        ({"at": NOW - 1}, "expires_at"),
        ({"at": float("nan")}, "expires_at"),
        ({"expires_in_s": 400 * 86400.0}, "expires_in_s"),
        ({"expires_in_s": 60.0, "at": NOW + 60}, "expires_at"),
    ):
        with pytest.raises(InvalidInput) as caught:
            expiry.expires_at(NOW, **kwargs)  # type: ignore[arg-type]
        assert caught.value.field == field


def test_a_client_job_run_has_its_jobs_timeout_and_an_old_run_the_default_expiry(
    db_url: str,
) -> None:
    async def check(tx: Tx) -> None:
        # Given a client job's run (no task; its plan's timeout 30 s), and a run made
        # without an expiry 8 days ago
        async with tx() as session:
            session.add(
                Run(
                    id=3,
                    task_id=None,
                    plan={"kind": "client", "timeout_s": 30.0, "steps": []},
                    targets=[],
                    created_at=NOW,
                    expires_at=NOW + 60,
                )
            )
            session.add(Run(id=4, task_id=1, targets=[], created_at=NOW - 8 * 86400))
        await add(
            tx,
            Instance(id=31, run_id=3, computer_id=1, state="Running", received_at=NOW - 331),
            Instance(id=32, run_id=3, computer_id=2, state="Running", received_at=NOW - 329),
            Instance(id=41, run_id=4, computer_id=3, state="Pending"),
        )  # fmt: skip
        # When the duty runs
        async with tx() as session:
            await expiry.sweep(session, GRACE, now=NOW)
        # Then the job's instance past 30 s + grace timed out, and the old run expired
        found = await states(tx)
        assert found[31][0] == "TimedOut" and found[32][0] == "Running"
        assert found[41][0] == "Expired"

    given(db_url, check)
