"""Run history in the database, on SQLite and PostgreSQL alike: run-list's filters and
pages (ns.run_queries), and retention pruning old runs in batches (ns.retention)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from taskfleet.errors import InvalidInput, NotFound
from taskfleet.ns import retention, run_queries
from taskfleet.ns.run_queries import RunFilter
from taskfleet.storage import database, migrate
from taskfleet.storage.models import (
    AuditEntry,
    Collection,
    Computer,
    Instance,
    Run,
    RunTarget,
    StatusSeen,
    Task,
)

DAY = 86400.0
NOW = 1_800_000_000.0


def run_with(db_url: str, check: Any) -> Any:
    """A database holding two tasks, two computers, collection Lab, and six runs (Given)."""

    async def go() -> Any:
        engine = database.create_engine(db_url)
        try:
            await migrate.upgrade(engine)
            sessions = database.sessionmaker(engine)

            @contextlib.asynccontextmanager
            async def tx() -> AsyncIterator[Any]:
                async with sessions() as session, session.begin():
                    yield session

            async with tx() as session:
                session.add_all(
                    [
                        Task(id=1, name="uptime", type="run_script", created_at=1.0),
                        Task(id=2, name="patch", type="run_script", created_at=1.0),
                        Computer(id=1, name="pc-1", hardware_id="h1", enrolled_at=1.0),
                        Computer(id=2, name="pc-2", hardware_id="h2", enrolled_at=1.0),
                        Collection(id=10, name="Lab", created_at=1.0),
                    ]
                )
                await session.flush()
                # run id: (task, targets, age in days, {computer: state})
                seed = {
                    1: (1, ["Lab"], 200, {1: "Succeeded", 2: "Failed"}),
                    2: (2, ["pc-1"], 100, {1: "Succeeded"}),
                    3: (1, ["Lab"], 30, {1: "Failed", 2: "Succeeded"}),
                    4: (2, ["collection:Lab"], 2, {1: "Succeeded", 2: "Succeeded"}),
                    5: (1, ["pc-2"], 1, {2: "Running"}),
                    6: (1, ["Lab"], 120, {1: "Pending"}),  # old, but still in progress
                }
                for run_id, (task_id, targets, age, states) in seed.items():
                    session.add(
                        Run(id=run_id, task_id=task_id, targets=targets,
                            created_at=NOW - age * DAY)
                    )  # fmt: skip
                    await session.flush()
                    session.add_all(RunTarget(run_id=run_id, name=t) for t in targets)
                    for computer_id, state in states.items():
                        instance_id = run_id * 10 + computer_id
                        session.add(Instance(id=instance_id, run_id=run_id,
                                             computer_id=computer_id, state=state))  # fmt: skip
                        session.add(StatusSeen(id=f"ev-{instance_id}", instance_id=instance_id,
                                               received_at=NOW - age * DAY))  # fmt: skip
                session.add_all(
                    [
                        AuditEntry(at=NOW - 400 * DAY, actor="a", action="old"),
                        AuditEntry(at=NOW - 10 * DAY, actor="a", action="recent"),
                    ]
                )
            return await check(tx)
        finally:
            await engine.dispose()

    return asyncio.run(go())


async def ids(tx: Any, filters: RunFilter, **page: Any) -> list[int]:
    async with tx() as session:
        found = await run_queries.find_runs(session, filters, **page)
    return [r.id for r in found.runs]


def test_run_list_filters_by_state_task_target_and_time(db_url: str) -> None:
    async def check(tx: Any) -> None:
        # When runs are listed with each filter, Then each finds just its runs, newest first
        assert await ids(tx, RunFilter()) == [6, 5, 4, 3, 2, 1]
        assert await ids(tx, RunFilter(states=["Failed"])) == [3, 1]
        assert await ids(tx, RunFilter(states=["Running", "Pending"])) == [6, 5]
        assert await ids(tx, RunFilter(task="patch")) == [4, 2]
        assert await ids(tx, RunFilter(task="1")) == [6, 5, 3, 1]
        # a collection: the runs given it (also as collection:Lab)
        assert await ids(tx, RunFilter(target="Lab")) == [6, 4, 3, 1]
        # a computer: the runs given it, and those that reached it through a collection
        assert await ids(tx, RunFilter(target="pc-2")) == [5, 4, 3, 1]
        assert await ids(tx, RunFilter(since=NOW - 40 * DAY)) == [5, 4, 3]
        assert await ids(tx, RunFilter(since=NOW - 150 * DAY, until=NOW - 50 * DAY)) == [6, 2]
        # all together
        both = RunFilter(states=["Failed"], task="uptime", target="pc-1", since=NOW - 60 * DAY)
        assert await ids(tx, both) == [3]

    run_with(db_url, check)


def test_run_list_pages_by_keyset(db_url: str) -> None:
    async def check(tx: Any) -> None:
        async with tx() as session:
            first = await run_queries.find_runs(session, RunFilter(), limit=4)
            assert [r.id for r in first.runs] == [6, 5, 4, 3] and first.next_before == 3
            rest = await run_queries.find_runs(session, RunFilter(), 4, first.next_before)
            assert [r.id for r in rest.runs] == [2, 1] and rest.next_before is None

    run_with(db_url, check)


def test_run_list_refuses_unknown_names_clearly(db_url: str) -> None:
    async def check(tx: Any) -> None:
        async with tx() as session:
            with pytest.raises(InvalidInput) as bad_state:
                await run_queries.find_runs(session, RunFilter(states=["Broken"]))
            assert bad_state.value.field == "state" and "Succeeded" in bad_state.value.message
            with pytest.raises(NotFound, match="no task or job 'nope'"):
                await run_queries.find_runs(session, RunFilter(task="nope"))
            with pytest.raises(NotFound, match="no collection or computer named 'Nowhere'"):
                await run_queries.find_runs(session, RunFilter(target="Nowhere"))

    run_with(db_url, check)


def test_retention_prunes_old_finished_runs_in_batches_and_keeps_the_rest(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tiny batches, so pruning takes several rounds as it does at scale
    monkeypatch.setattr(retention, "BATCH", 1)
    monkeypatch.setattr(retention, "RUNS_PER_BATCH", 1)

    async def check(tx: Any) -> None:
        # When history older than 90 days and audit older than 365 days is pruned
        pruned = await retention.prune(tx, 90 * DAY, 365 * DAY, now=NOW, pause_s=0)
        # Then the finished runs older than 90 days went with their instances and records
        assert await ids(tx, RunFilter()) == [6, 5, 4, 3]  # 6 is old but still in progress
        assert (pruned.runs, pruned.instances, pruned.audit) == (2, 3, 1)
        async with tx() as session:
            instances = set((await session.scalars(Instance.__table__.select())).all())
            assert {i for i in instances if i // 10 in (1, 2)} == set()
            seen = {s.id for s in (await session.execute(StatusSeen.__table__.select())).all()}
            # status records older than 90 days go too, even run 6's (never resent so late)
            assert seen == {"ev-31", "ev-32", "ev-41", "ev-42", "ev-52"}
            targets = (await session.execute(RunTarget.__table__.select())).all()
            assert {t.run_id for t in targets} == {3, 4, 5, 6}
            audit = [a.action for a in (await session.execute(AuditEntry.__table__.select()))]
            assert audit == ["recent"]
        # and a second round (another replica, the next hour) finds nothing more
        again = await retention.prune(tx, 90 * DAY, 365 * DAY, now=NOW, pause_s=0)
        assert not again.any
        # and 0 keeps everything forever
        assert not (await retention.prune(tx, 0, 0, now=NOW + 9999 * DAY, pause_s=0)).any

    run_with(db_url, check)
