"""Targets minus exclusions, schedules, maintenance windows and completion at the storage
level, on SQLite and PostgreSQL alike (the NS's services without HTTP)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update

from taskfleet.errors import InvalidInput, NotFound, TaskfleetError
from taskfleet.ns import collections as collections_
from taskfleet.ns import completion, computers, preview, runs, schedules, tasks, window_hold
from taskfleet.ns.collection_windows import set_windows
from taskfleet.ns.settings import NSSettings
from taskfleet.ns.state import NSState
from taskfleet.protocol.messages import Facts, TaskType
from taskfleet.storage import database, migrate
from taskfleet.storage.models import AuditEntry, Computer, Instance, Run, Schedule

PCS = ["pc-1", "pc-2", "pc-3"]
DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def new_state(db_url: str, tmp_path: Path) -> NSState:
    engine = database.create_engine(db_url)
    settings = NSSettings(db_url=db_url, bind="127.0.0.1:9", data_dir=tmp_path)
    return NSState(settings, engine, database.sessionmaker(engine))


def scenario(db_url: str, tmp_path: Path, body: Callable[[NSState], Awaitable[None]]) -> None:
    """Given a database with three computers in collection 'Office' and a task 'hello'."""

    async def go() -> None:
        state = new_state(db_url, tmp_path)
        try:
            await migrate.upgrade(state.engine)
            async with state.session() as session:
                await collections_.ensure_builtins(session)
                await collections_.create(session, "Office", "", {"name_pattern": "pc-*"}, "test")
                for name in PCS:
                    await computers.upsert(session, Facts(name=name, hardware_id=f"hw-{name}"))
                script = {"script": "echo hi", "interpreter": "sh"}
                await tasks.create(session, "hello", TaskType.RUN_SCRIPT, script, 60, "admin")
            window_hold.forget_all()
            await body(state)
        finally:
            await state.engine.dispose()

    asyncio.run(go())


async def start(state: NSState, **options: Any) -> int:
    async with state.session() as session:
        run = await runs.start_run(state, session, "hello", ["Office"], True, "admin", **options)
        return run.id


async def computers_of(state: NSState, run_id: int) -> list[str]:
    async with state.session() as session:
        found = await runs.summary(session, run_id)
    return sorted(i["computer"] for i in found.instances)


def test_exclusions_leave_computers_out_and_the_run_keeps_what_it_was_given(
    db_url: str, tmp_path: Path
) -> None:
    async def body(state: NSState) -> None:
        # When a run on Office excludes pc-2
        run_id = await start(state, exclude=["pc-2"])
        # Then it has instances for the others only, and shows targets and exclusions
        assert await computers_of(state, run_id) == ["pc-1", "pc-3"]
        async with state.session() as session:
            found = await runs.summary(session, run_id, with_instances=False)
        assert (found.targets, found.exclude) == (["Office"], ["pc-2"])
        # And excluding everything, or something unknown, is refused naming the field
        with pytest.raises(InvalidInput) as nothing:
            await start(state, exclude=["Office"])
        assert nothing.value.field == "exclude"
        with pytest.raises(NotFound) as unknown:
            await start(state, exclude=["no-such-pc"])
        assert unknown.value.field == "exclude"
        async with state.session() as session:
            assert await session.scalar(select(func.count()).select_from(Run)) == 1

    scenario(db_url, tmp_path, body)


def test_the_run_preview_counts_the_computers_the_exclusions_leave(
    db_url: str, tmp_path: Path
) -> None:
    async def body(state: NSState) -> None:
        # Given pc-1 with sh, pc-2 with only powershell, pc-3 that never said
        async with state.session() as session:
            for name, found in (("pc-1", ["sh"]), ("pc-2", ["powershell"])):
                await session.execute(
                    update(Computer).where(Computer.name == name).values(interpreters=found)
                )
        async with state.session() as session:
            # When the run of 'hello' (sh) on Office is previewed without exclusions
            everyone = await preview.preview(session, "hello", ["Office"])
            # and with pc-2, then pc-3, excluded as the run would exclude them
            no_pc2 = await preview.preview(session, "hello", ["Office"], ["pc-2"])
            no_pc3 = await preview.preview(session, "hello", ["Office"], ["computer:3"])
            # Then each counts only the computers the run would reach
            assert (everyone.computers, everyone.lacking, everyone.unknown) == (3, 1, 1)
            assert everyone.lacking_computers == ["pc-2"] and "pc-2" in everyone.warning
            assert (no_pc2.computers, no_pc2.lacking, no_pc2.unknown) == (2, 0, 1)
            assert no_pc2.warning == ""
            assert (no_pc3.computers, no_pc3.lacking, no_pc3.unknown) == (2, 1, 0)
            # And an exclusion naming nothing is refused as the run refuses it
            with pytest.raises(NotFound) as unknown:
                await preview.preview(session, "hello", ["Office"], ["no-such-pc"])
            assert unknown.value.field == "exclude"

    scenario(db_url, tmp_path, body)


def plan(**changes: Any) -> schedules.Plan:
    base: dict[str, Any] = {
        "task": "hello", "targets": ["Office"], "exclude": [], "params": {}, "live": True,
        "ignore_windows": False, "requirements": {}, "options": {},
    }  # fmt: skip
    return schedules.Plan(**{**base, **changes})


def test_a_cron_schedule_fires_once_per_occurrence_and_coalesces_missed_ones(
    db_url: str, tmp_path: Path
) -> None:
    async def body(state: NSState) -> None:
        # Given a schedule at 03:00 every day, Berlin time
        async with state.session() as session:
            made = await schedules.create(
                session,
                plan(exclude=["pc-3"], options={"expires_in_s": 3600}),
                "admin",
                cron="0 3 * * *",
                timezone="Europe/Berlin",
            )
            first = made.next_fire_at
            schedule_id = made.id
        assert first is not None
        local = dt.datetime.fromtimestamp(first, ZoneInfo("Europe/Berlin"))
        assert (local.hour, local.minute) == (3, 0)
        # When no NS ran for three more days after the first occurrence
        now = first + 3 * 86400 + 60
        assert await schedules.fire_due(state, now) == 1
        # Then it fired once, for the latest occurrence, standing for the three missed
        assert await schedules.fire_due(state, now) == 0
        async with state.session() as session:
            fired = (await session.scalars(select(Run))).all()
            assert len(fired) == 1
            run = fired[0]
            assert (run.schedule_id, run.coalesced) == (schedule_id, 3)
            assert run.scheduled_for == pytest.approx(first + 3 * 86400)
            assert run.exclude == ["pc-3"]
            assert run.expires_at == pytest.approx(run.created_at + 3600)
            schedule = await session.get(Schedule, schedule_id)
            assert schedule is not None and schedule.next_fire_at is not None
            assert schedule.next_fire_at > now and schedule.last_run_id == run.id
            audit = await session.scalar(
                select(AuditEntry).where(AuditEntry.action == "schedule.fire")
            )
            assert audit is not None and audit.detail["coalesced"] == 3
        assert await computers_of(state, run.id) == ["pc-1", "pc-2"]

    scenario(db_url, tmp_path, body)


# Several NS processes share PostgreSQL only; on SQLite one NS serves alone.
@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_two_ns_processes_firing_together_start_one_run_per_occurrence(
    db_url: str, tmp_path: Path
) -> None:
    async def body(state: NSState) -> None:
        # Given ten one-off schedules, all due
        async with state.session() as session:
            for _ in range(10):
                await schedules.create(session, plan(), "admin", at=time.time() + 1)
        other = new_state(state.settings.db_url, tmp_path)
        try:
            # When two NS states (two engines, as two replicas) fire at the same moment
            later = time.time() + 5
            fired = await asyncio.gather(
                schedules.fire_due(state, later), schedules.fire_due(other, later)
            )
        finally:
            await other.engine.dispose()
        # Then each schedule made exactly one run
        assert sum(fired) == 10
        async with state.session() as session:
            per_schedule = (
                await session.execute(
                    select(Run.schedule_id, func.count()).group_by(Run.schedule_id)
                )
            ).all()
        assert len(per_schedule) == 10 and {n for _, n in per_schedule} == {1}

    scenario(db_url, tmp_path, body)


@pytest.mark.parametrize(
    ("timing", "field"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "0 0 30 2 *"}, "cron"),
        ({"cron": "0 3 * * *", "timezone": "Mars/Base"}, "timezone"),
        ({"at": 1000.0}, "at"),
        ({}, "at"),
    ],
)
def test_bad_timing_is_refused_naming_the_field(
    db_url: str, tmp_path: Path, timing: dict[str, Any], field: str
) -> None:
    async def body(state: NSState) -> None:
        with pytest.raises(TaskfleetError) as caught:
            async with state.session() as session:
                await schedules.create(session, plan(), "admin", **timing)
        assert caught.value.status_code == 400 and caught.value.field == field
        async with state.session() as session:
            assert await session.scalar(select(func.count()).select_from(Schedule)) == 0

    scenario(db_url, tmp_path, body)


def window_from_now(start_s: float, length_s: float) -> str:
    """A UTC window from ``start_s`` seconds from now, ``length_s`` long."""
    opens = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=start_s)
    closes = opens + dt.timedelta(seconds=length_s)
    return (
        f"{DAYS[opens.weekday()]} {opens:%H:%M:%S}-{DAYS[closes.weekday()]} {closes:%H:%M:%S} UTC"
    )


def test_a_closed_window_holds_work_back_unless_the_run_ignores_windows(
    db_url: str, tmp_path: Path
) -> None:
    async def body(state: NSState) -> None:
        # Given Office's only window opens in an hour
        async with state.session() as session:
            office = await collections_.get(session, "Office")
            await set_windows(session, office, [window_from_now(3600, 3600)], "admin")
        # When a run on Office starts, and another that ignores windows on pc-1 only
        held = await start(state)
        async with state.session() as session:
            # Then none of its computers has work to deliver
            assert await runs.computers_with_work(session, None, 60) == []
        async with state.session() as session:
            ignoring = await runs.start_run(
                state, session, "hello", ["pc-1"], True, "admin", ignore_windows=True
            )
        async with state.session() as session:
            pc1 = await computers.find(session, "pc-1")
            work = await runs.deliver(session, pc1.id, 60)
        assert [w.run_id for w in work] == [ignoring.id]
        # And once the window is open (set to now), the held run is delivered
        async with state.session() as session:
            office = await collections_.get(session, "Office")
            view = await set_windows(session, office, [window_from_now(-60, 3600)], "admin")
        assert view.open_now
        async with state.session() as session:
            waiting = await runs.computers_with_work(session, None, 60)
        assert len(waiting) == 3
        async with state.session() as session:
            assert [w.run_id for w in await runs.deliver(session, pc1.id, 60)] == [held]

    scenario(db_url, tmp_path, body)


def test_the_retickle_tells_of_computers_whose_window_opened(db_url: str, tmp_path: Path) -> None:
    async def body(state: NSState) -> None:
        async with state.session() as session:
            office = await collections_.get(session, "Office")
            await set_windows(session, office, [window_from_now(3600, 3600)], "admin")
        await start(state)
        retickler = window_hold.Retickler()
        assert await retickler.round(state) == 0  # closed: nobody told
        async with state.session() as session:
            office = await collections_.get(session, "Office")
            await set_windows(session, office, [window_from_now(-1, 3600)], "admin")
        assert await retickler.round(state) == 3  # opened: its three computers
        assert await retickler.round(state) == 0  # still open: not told again
        assert len(state.hub.local_pending) == 3

    scenario(db_url, tmp_path, body)


def test_settle_records_the_requirement_that_ended_a_run(db_url: str, tmp_path: Path) -> None:
    async def body(state: NSState) -> None:
        # Given a run that needs two computers done, and one without requirements
        needs_two = await start(state, requirements={"min_count": 2})
        plain = await start(state)
        async with state.session() as session:
            assert await completion.settle(session) == []
            # When two computers of each finish
            for run_id in (needs_two, plain):
                ids = (
                    await session.scalars(select(Instance.id).where(Instance.run_id == run_id))
                ).all()[:2]
                await session.execute(
                    update(Instance).where(Instance.id.in_(ids)).values(state="Succeeded")
                )
        async with state.session() as session:
            # Then the first is complete by min_count; the other is still open
            assert await completion.settle(session) == [needs_two]
        async with state.session() as session:
            found = await runs.summary(session, needs_two, with_instances=False)
            other = await runs.summary(session, plain, with_instances=False)
        assert (found.complete, found.ended_by) == (True, "min_count")
        assert found.requirements == {"min_count": 2}
        assert (other.complete, other.ended_by) == (False, None)

    scenario(db_url, tmp_path, body)


def test_settle_reads_only_runs_that_may_be_complete_a_batch_at_a_time(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches of two, so five candidate runs take three reads
    monkeypatch.setattr(completion, "BATCH", 2)
    checked: list[int] = []
    real_check = completion.check

    def spy(run: Any, counts: Any, now: float) -> Any:
        checked.append(run.id)
        return real_check(run, counts, now)

    monkeypatch.setattr(completion, "check", spy)

    async def body(state: NSState) -> None:
        # Given runs without requirements, all done or with a computer still working,
        # and runs with requirements, met (max wait over) or not (min wait ahead)
        done = [await start(state), await start(state), await start(state)]
        working = await start(state)
        waited = await start(state, requirements={"max_wait_s": 0})
        ahead = await start(state, requirements={"min_count": 1, "min_wait_s": 3600})
        async with state.session() as session:
            for run_id in [*done, working, ahead]:
                await session.execute(
                    update(Instance).where(Instance.run_id == run_id).values(state="Succeeded")
                )
            await session.execute(
                update(Instance)
                .where(Instance.run_id == working, Instance.computer_id == 1)
                .values(state="Running")
            )
            # ahead has met min_count, but its min wait holds it, and one computer is left
            await session.execute(
                update(Instance)
                .where(Instance.run_id == ahead, Instance.computer_id == 1)
                .values(state="Pending")
            )
        # When the duty settles
        async with state.session() as session:
            ended = await completion.settle(session)
        # Then the same runs end as when every open run was read
        assert ended == [*done, waited]
        async with state.session() as session:
            by = {r.id: r.ended_by for r in (await session.scalars(select(Run))).all()}
        assert [by[r] for r in done] == ["all_done"] * 3 and by[waited] == "max_wait"
        assert by[working] is None and by[ahead] is None
        # And the run without requirements that has a computer working was never read
        assert sorted(checked) == sorted([*done, waited, ahead])
        # And the next round reads only the run whose requirements may still end it
        checked.clear()
        async with state.session() as session:
            assert await completion.settle(session) == []
        assert checked == [ahead]

    scenario(db_url, tmp_path, body)
