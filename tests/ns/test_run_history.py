"""Run history in the database, on SQLite and PostgreSQL alike: run-list's filters and
pages (ns.run_queries), and retention pruning old runs in batches (ns.retention)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select, update

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


def test_retention_prunes_a_server_job_run_together_with_its_step_runs(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tiny batches: a job run and its steps must still go in the same one
    monkeypatch.setattr(retention, "BATCH", 1)
    monkeypatch.setattr(retention, "RUNS_PER_BATCH", 1)
    plan = {"kind": "server", "steps": [{"name": "a"}, {"name": "b"}], "timeout_s": 60}
    # job run id: (age in days, ended, {step run id: (step, age, state of pc-1's instance)})
    jobs = {
        7: (200, True, {8: (0, 200, "Succeeded"), 9: (1, 10, "Failed")}),  # a young step
        10: (150, False, {11: (0, 150, "Succeeded")}),  # the job is still going
        12: (150, True, {13: (0, 150, "Running")}),  # ended, but a step still runs
    }

    async def check(tx: Any) -> None:
        # Given server job runs of those ages, and a step run whose job run is gone
        async with tx() as session:
            for job_run, (age, ended, steps) in jobs.items():
                at = NOW - age * DAY
                session.add(Run(id=job_run, job_id=1, plan=plan, targets=["Lab"], created_at=at,
                                ended_at=at + 1 if ended else None))  # fmt: skip
                for run_id, (step, step_age, _) in steps.items():
                    session.add(Run(id=run_id, task_id=1, parent_run_id=job_run, step=step,
                                    targets=["Lab"], created_at=NOW - step_age * DAY))  # fmt: skip
            session.add(Run(id=14, task_id=1, parent_run_id=99, step=0, targets=["Lab"],
                            created_at=NOW - 200 * DAY))  # fmt: skip
            await session.flush()
            session.add_all(RunTarget(run_id=r, name="Lab") for r in (7, 8, 9, 10, 11, 12, 13, 14))
            for _, _, steps in jobs.values():
                for run_id, (_, _, state) in steps.items():
                    session.add(Instance(id=run_id * 10 + 1, run_id=run_id, computer_id=1,
                                         state=state))  # fmt: skip
        # When history older than 90 days is pruned
        await retention.prune(tx, 90 * DAY, 0, now=NOW, pause_s=0)
        # Then the ended job went with both its steps (the young one too) and their rows,
        # the job still going and the one with a step still running kept all of theirs,
        # and the step run left without its job run went
        async with tx() as session:
            kept = set((await session.scalars(select(Run.id))).all())
            assert kept == {3, 4, 5, 6, 10, 11, 12, 13}
            instances = set((await session.scalars(select(Instance.run_id))).all())
            assert instances >= {11, 13} and not instances & {8, 9}
            targets = set((await session.scalars(select(RunTarget.run_id))).all())
            assert targets & {7, 8, 9, 14} == set()
        # And once the running step ends, its job run and the step go together
        async with tx() as session:
            await session.execute(update(Instance).where(Instance.run_id == 13)
                                  .values(state="Succeeded"))  # fmt: skip
        await retention.prune(tx, 90 * DAY, 0, now=NOW, pause_s=0)
        async with tx() as session:
            assert set((await session.scalars(select(Run.id))).all()) == {3, 4, 5, 6, 10, 11}

    run_with(db_url, check)
