"""Status ingest isolates what the database refuses (R12), on SQLite and PostgreSQL alike.

The edges check every field before status reaches ``ingest``; these tests hand it what
an edge would have refused (a lone surrogate, an exit code wider than the column), as
an older task server's spool could, and check that only those events are rejected.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from taskfleet.ns import status_intake
from taskfleet.protocol.messages import StatusEvent
from taskfleet.storage import database, migrate
from taskfleet.storage.models import (
    AssignmentRecord,
    AuditEntry,
    Computer,
    Instance,
    Run,
    Task,
    TaskServer,
)

Sessions = async_sessionmaker[AsyncSession]


def run(db_url: str, body: Callable[[Sessions], Awaitable[None]]) -> None:
    async def go() -> None:
        engine = database.create_engine(db_url)
        try:
            await migrate.upgrade(engine)
            await body(database.sessionmaker(engine))
        finally:
            await engine.dispose()

    asyncio.run(go())


async def given_instances(sessions: Sessions, computers: int) -> dict[str, Any]:
    """A task server that served ``computers`` computers, and one run's instance on each;
    and one computer it never served, with an instance too."""
    now = time.time()
    async with sessions() as session, session.begin():
        names = [f"pc-{n}" for n in range(computers)] + ["ts-a", "stranger"]
        rows = {n: Computer(name=n, hardware_id=f"hw-{n}", enrolled_at=now) for n in names}
        session.add_all(rows.values())
        task = Task(name="hello", type="run-script", params={}, created_at=now)
        session.add(task)
        await session.flush()
        ts = TaskServer(
            computer_id=rows["ts-a"].id,
            name="ts-a",
            url="http://ts-a",
            approval="approved",
            credential_hash="-",
            registered_at=now,
        )
        run_row = Run(task_id=task.id, targets=["All Computers"], created_at=now)
        session.add_all([ts, run_row])
        await session.flush()
        served = [rows[f"pc-{n}"] for n in range(computers)]
        session.add_all(
            AssignmentRecord(
                computer_id=c.id, task_server_id=ts.id, step="policy", reason="", at=now
            )
            for c in served
        )
        instances = {
            c.name: Instance(run_id=run_row.id, computer_id=c.id)
            for c in [*served, rows["stranger"]]
        }
        session.add_all(instances.values())
        await session.flush()
        return {
            "ts": ts.id,
            "instances": {name: (i.id, i.computer_id) for name, i in instances.items()},
        }


def event(where: tuple[int, int], **fields: Any) -> StatusEvent:
    instance_id, computer_id = where
    values: dict[str, Any] = {"state": "Succeeded", "at": time.time(), "return_code": 0}
    values.update(fields)
    return StatusEvent(uuid.uuid4().hex, instance_id, computer_id, **values)


async def states(sessions: Sessions) -> dict[int, tuple[str, str | None]]:
    async with sessions() as session:
        rows = await session.execute(select(Instance.id, Instance.state, Instance.output))
        return {r.id: (r.state, r.output) for r in rows}


def test_a_batch_with_events_the_database_refuses_applies_the_rest(db_url: str) -> None:
    async def body(sessions: Sessions) -> None:
        # Given six computers' instances, served by one task server
        given = await given_instances(sessions, 6)
        where = given["instances"]
        # And a batch in which two events hold what no store can take: a lone surrogate
        # in the output, an exit code wider than any integer column
        batch = [
            event(where["pc-0"], output="fine"),
            event(where["pc-1"], output="half a character \ud800 here"),
            event(where["pc-2"], output="fine too"),
            event(where["pc-3"], return_code=2**70),
            event(where["pc-4"], output="and this"),
            event(where["pc-5"], state="Running"),
        ]
        bad = {batch[1].id, batch[3].id}

        # When the task server's batch is ingested
        async with sessions() as session, session.begin():
            done = await status_intake.ingest_isolated(session, batch, given["ts"])

        # Then the two are rejected, each with the database's reason, and the rest applied
        assert set(done.ack.rejected) == bad
        assert all("database" in done.ack.reasons[i] for i in bad)
        assert set(done.ack.accepted) == {e.id for e in batch} - bad
        found = await states(sessions)
        assert found[where["pc-0"][0]] == ("Succeeded", "fine")
        assert found[where["pc-2"][0]] == ("Succeeded", "fine too")
        assert found[where["pc-4"][0]] == ("Succeeded", "and this")
        assert found[where["pc-5"][0]][0] == "Running"
        assert found[where["pc-1"][0]][0] == "Pending"
        assert found[where["pc-3"][0]][0] == "Pending"

        # And sent again (the task server's retry), nothing is applied twice
        async with sessions() as session, session.begin():
            again = await status_intake.ingest_isolated(session, batch, given["ts"])
        assert set(again.ack.rejected) == bad
        async with sessions() as session:
            counts = await session.scalars(select(Instance.status_count).order_by(Instance.id))
            assert sorted(counts.all()) == [0, 0, 0, 1, 1, 1, 1]

    run(db_url, body)


def test_status_for_a_computer_the_task_server_never_served_is_refused_and_audited(
    db_url: str,
) -> None:
    async def body(sessions: Sessions) -> None:
        # Given a task server that served pc-0, and a computer it never served
        given = await given_instances(sessions, 1)
        where = given["instances"]
        own = event(where["pc-0"], output="mine")
        foreign = event(where["stranger"], output="not yours")
        raw = [own.__dict__, foreign.__dict__]

        # When it relays status for both
        async with sessions() as session, session.begin():
            done = await status_intake.relayed(session, raw, given["ts"])

        # Then the stranger's is rejected, saying why, and audited; its own is applied
        assert done.ack.accepted == [own.id]
        assert done.ack.rejected == [foreign.id]
        assert "not assigned to this task server" in done.ack.reasons[foreign.id]
        found = await states(sessions)
        assert found[where["stranger"][0]][0] == "Pending"
        assert found[where["pc-0"][0]][0] == "Succeeded"
        async with sessions() as session:
            entry = await session.scalar(
                select(AuditEntry).where(AuditEntry.action == "status.refused")
            )
        assert entry is not None
        assert entry.actor == "taskserver:ts-a"
        assert entry.detail["computers"] == [where["stranger"][1]]

    run(db_url, body)


def test_events_failing_a_field_check_are_rejected_by_id_with_the_field(db_url: str) -> None:
    async def body(sessions: Sessions) -> None:
        # Given a task server's batch in which events hold values no field may
        given = await given_instances(sessions, 1)
        good = event(given["instances"]["pc-0"], output="ok")
        raw: list[Any] = [
            {**good.__dict__, "id": "nan-time", "at": float("nan")},
            {**good.__dict__, "id": "nul-state", "state": "Succ\x00eeded"},
            {**good.__dict__, "id": "huge-instance", "instance_id": 2**31},
            {**good.__dict__, "id": "x" * 65},
            good.__dict__,
            "not an event",
        ]

        # When it is relayed
        async with sessions() as session, session.begin():
            done = await status_intake.relayed(session, raw, given["ts"])

        # Then each bad one is rejected naming its field; the good one is applied
        assert done.ack.accepted == [good.id]
        reasons = done.ack.reasons
        assert "at" in reasons["nan-time"]
        assert "state" in reasons["nul-state"] and "NUL" in reasons["nul-state"]
        assert "instance_id" in reasons["huge-instance"]
        assert "id" in reasons["x" * 65]

    run(db_url, body)
