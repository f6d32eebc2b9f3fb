"""The client limit against interleaved assignments, and each task server's count of its
agents through moves, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from taskfleet.ns import assignment, collections, computers
from taskfleet.ns.settings import NSSettings
from taskfleet.ns.state import NSState
from taskfleet.protocol.messages import Assignment, Facts
from taskfleet.storage import database, migrate
from taskfleet.storage.models import Computer, TaskServer

SUBNET = "10.1.1.{}/24"


def run(db_url: str, tmp_path: Path, body: Callable[[NSState], Awaitable[None]]) -> None:
    async def go() -> None:
        engine = database.create_engine(db_url)
        try:
            await migrate.upgrade(engine)
            settings = NSSettings(db_url=db_url, bind="127.0.0.1:9", data_dir=tmp_path)
            state = NSState(settings, engine, database.sessionmaker(engine))
            async with state.session() as session:
                await collections.ensure_builtins(session)
            await body(state)
        finally:
            await engine.dispose()

    asyncio.run(go())


async def computer(state: NSState, name: str, host: int) -> int:
    facts = Facts(name=name, hardware_id=f"hw-{name}", addresses=[SUBNET.format(host)])
    async with state.session() as session:
        found, _ = await computers.upsert(session, facts)
        return found.id


async def task_server(state: NSState, name: str, host: int, client_limit: int) -> int:
    """An approved task server with a fresh heartbeat on the computers' subnet."""
    computer_id = await computer(state, name, host)
    async with state.session() as session:
        ts = TaskServer(
            computer_id=computer_id,
            name=name,
            url=f"http://{name}",
            approval="approved",
            credential_hash="-",
            client_limit=client_limit,
            heartbeat_period_s=3600,
            last_heartbeat=time.time(),
            registered_at=time.time(),
        )
        session.add(ts)
        await session.flush()
        return ts.id


async def assign(state: NSState, computer_id: int, failed: int | None = None) -> Assignment:
    async with state.session() as session:
        found = await session.get(Computer, computer_id)
        assert found is not None
        return await assignment.assign(state, session, found, failed)


async def counts(state: NSState) -> dict[str, tuple[int, int]]:
    """Task server name -> (its assigned_count, computers actually assigned to it)."""
    async with state.session() as session:
        rows = (
            await session.execute(select(TaskServer.id, TaskServer.name, TaskServer.assigned_count))
        ).all()
        out = {}
        for ts_id, name, count in rows:
            real = (
                await session.scalars(select(Computer.id).where(Computer.task_server_id == ts_id))
            ).all()
            out[name] = (count, len(real))
        return out


def test_an_assignment_that_lost_the_last_place_chooses_again(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def body(state: NSState) -> None:
        # Given two task servers on the computers' subnet: ts-1 (limit 1, least loaded
        # first by id) and ts-2, and two computers
        await task_server(state, "ts-1", 2, client_limit=1)
        await task_server(state, "ts-2", 3, client_limit=5)
        slow, fast = await computer(state, "pc-slow", 50), await computer(state, "pc-fast", 51)

        # When pc-slow decides on ts-1, and before it takes the place, pc-fast takes it
        decide = assignment.decide
        decided, taken = asyncio.Event(), asyncio.Event()
        seen: list[str] = []

        async def interleaved(session: Any, comp: assignment.Asker, *args: Any, **kw: Any) -> Any:
            decision = await decide(session, comp, *args, **kw)
            if comp.name == "pc-slow":
                seen.append(decision.task_server_name)
                if len(seen) == 1:
                    decided.set()
                    await taken.wait()
            return decision

        monkeypatch.setattr(assignment, "decide", interleaved)

        async def fast_one() -> Assignment:
            await decided.wait()
            try:
                return await assign(state, fast)
            finally:
                taken.set()

        slow_reply, fast_reply = await asyncio.gather(assign(state, slow), fast_one())

        # Then pc-fast has ts-1; pc-slow found it full, chose again and got ts-2
        assert fast_reply.task_server_name == "ts-1"
        assert seen == ["ts-1", "ts-2"]
        assert slow_reply.task_server_name == "ts-2"
        assert "ts-1 skipped, at its client limit (1/1)" in slow_reply.reason
        # ... and every count agrees with the computers assigned
        assert await counts(state) == {"ts-1": (1, 1), "ts-2": (1, 1)}

    run(db_url, tmp_path, body)


def test_counts_follow_moves_and_a_repeat_asks_for_no_place(db_url: str, tmp_path: Path) -> None:
    async def body(state: NSState) -> None:
        # Given two task servers with a limit of 1 each and two computers
        a = await task_server(state, "ts-a", 2, client_limit=1)
        b = await task_server(state, "ts-b", 3, client_limit=1)
        one, two = await computer(state, "pc-1", 50), await computer(state, "pc-2", 51)

        # When pc-1 is assigned, then asks again twice (an agent restart, R4)
        assert (await assign(state, one)).task_server_id == a
        for _ in range(2):
            # Then it keeps its place: ts-a is at its limit but its own place counts
            assert (await assign(state, one)).task_server_id == a
        assert await counts(state) == {"ts-a": (1, 1), "ts-b": (0, 0)}

        # When pc-1 fails over from ts-a (R4): its place moves to ts-b
        assert (await assign(state, one, failed=a)).task_server_id == b
        assert await counts(state) == {"ts-a": (0, 0), "ts-b": (1, 1)}

        # When pc-2 asks: ts-a has room again
        assert (await assign(state, two)).task_server_id == a
        # When pc-2 fails over from ts-a, ts-b being full: the NS serves it, ts-a is freed
        moved = await assign(state, two, failed=a)
        assert moved.task_server_id is None
        assert "ts-b skipped, at its client limit (1/1)" in moved.reason
        assert await counts(state) == {"ts-a": (0, 0), "ts-b": (1, 1)}

    run(db_url, tmp_path, body)


def test_many_assignments_at_once_keep_the_limit(db_url: str, tmp_path: Path) -> None:
    async def body(state: NSState) -> None:
        # Given a task server with a limit of 3 and 30 computers
        await task_server(state, "ts-small", 2, client_limit=3)
        ids = [await computer(state, f"pc-{i}", 100 + i) for i in range(30)]
        # When all of them are assigned at once, each in its own transaction
        replies = await asyncio.gather(*(assign(state, i) for i in ids))
        # Then exactly 3 got it and the count agrees
        assert sum(r.task_server_name == "ts-small" for r in replies) == 3
        assert await counts(state) == {"ts-small": (3, 3)}

    run(db_url, tmp_path, body)
