"""Stored collection membership follows every change, on SQLite and PostgreSQL alike.

After each step the stored rows are compared with the names the step should give
and with the rules evaluated from scratch over the whole fleet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from taskfleet.ns import collections, computers, drafts, membership, runs
from taskfleet.ns.rules import Evaluator, Subject
from taskfleet.protocol.messages import Facts
from taskfleet.storage import database, migrate
from taskfleet.storage.models import (
    Collection,
    CollectionMember,
    CollectionMembership,
    Computer,
    TaskServer,
)

Sessions = async_sessionmaker[AsyncSession]
RULES = {
    "Web": {"name_pattern": "web-*"},
    "Subnet 10.1": {"cidr": ["10.1.0.0/16"]},
    "Role db": {"fact": {"role": "db"}},
    "Pilot": {},
    "Pilot or web": {"include": ["Pilot", "Web"]},
    "Subnet 10.1 but not Pilot": {"include": ["Subnet 10.1"], "exclude": ["Pilot"]},
}


def run(db_url: str, body: Callable[[Sessions], Awaitable[None]]) -> None:
    async def go() -> None:
        engine = database.create_engine(db_url)
        try:
            await migrate.upgrade(engine)
            sessions = database.sessionmaker(engine)
            async with sessions() as session, session.begin():
                await collections.ensure_builtins(session)
                for name, rules in RULES.items():
                    await collections.create(session, name, "", dict(rules), "test")
            await body(sessions)
        finally:
            await engine.dispose()

    asyncio.run(go())


async def enrol(sessions: Sessions, name: str, address: str, **facts: str) -> int:
    async with sessions() as session, session.begin():
        computer, _ = await computers.upsert(
            session, Facts(name=name, hardware_id=f"hw-{name}", addresses=[address], facts=facts)
        )
        return computer.id


async def stored(sessions: Sessions) -> dict[str, set[str]]:
    async with sessions() as session:
        rows = await session.execute(
            select(Collection.name, Computer.name)
            .join(CollectionMembership, CollectionMembership.collection_id == Collection.id)
            .join(Computer, Computer.id == CollectionMembership.computer_id)
        )
        names = (await session.scalars(select(Collection.name))).all()
        out: dict[str, set[str]] = {name: set() for name in names}
        for collection, computer in rows.all():
            out[collection].add(computer)
        return out


async def evaluated(sessions: Sessions) -> dict[str, set[str]]:
    """The rules evaluated from scratch over every computer."""
    async with sessions() as session:
        found = (await session.scalars(select(Collection))).all()
        static: dict[int, set[int]] = {}
        for member in (await session.scalars(select(CollectionMember))).all():
            static.setdefault(member.collection_id, set()).add(member.computer_id)
        approvals = dict(
            (await session.execute(select(TaskServer.computer_id, TaskServer.approval))).all()
        )
        evaluator = Evaluator({c.name: (c.id, c.rules) for c in found}, static, approvals)
        out: dict[str, set[str]] = {c.name: set() for c in found}
        for c in (await session.scalars(select(Computer))).all():
            subject = Subject(c.id, c.name, c.os, tuple(c.addresses), c.facts)
            for name in out:
                if evaluator.contains(name, subject):
                    out[name].add(c.name)
        return out


async def check(sessions: Sessions, expected: dict[str, set[str]]) -> None:
    now = await stored(sessions)
    assert now == await evaluated(sessions)
    for name, members in expected.items():
        assert now[name] == members, name


def test_membership_follows_computers_static_members_and_task_servers(db_url: str) -> None:
    async def body(sessions: Sessions) -> None:
        web = await enrol(sessions, "web-1", "10.1.0.5/24")
        await enrol(sessions, "db-1", "10.2.0.5/24", role="db")
        await enrol(sessions, "pc-1", "10.1.7.7/24")
        everyone = {"web-1", "db-1", "pc-1"}
        await check(
            sessions,
            {
                "All Computers": everyone,
                "Web": {"web-1"},
                "Role db": {"db-1"},
                "Pilot or web": {"web-1"},
                "Subnet 10.1 but not Pilot": {"web-1", "pc-1"},
            },
        )

        # The agent re-enrols with new facts: renamed, moved, another role.
        await enrol(sessions, "web-1", "10.2.0.6/24", role="db")
        async with sessions() as session, session.begin():
            renamed = await session.get(Computer, web)
            assert renamed is not None
            renamed.name = "db-2"
        await check(
            sessions,
            {"Web": set(), "Role db": {"db-1", "db-2"}, "Subnet 10.1 but not Pilot": {"pc-1"}},
        )

        async with sessions() as session, session.begin():
            pilot = await collections.get(session, "Pilot")
            pc = await computers.find(session, "pc-1")
            await collections.set_static(session, pilot, [pc], add=True, actor="test")
        await check(
            sessions,
            {"Pilot": {"pc-1"}, "Pilot or web": {"pc-1"}, "Subnet 10.1 but not Pilot": set()},
        )
        async with sessions() as session, session.begin():
            pilot = await collections.get(session, "Pilot")
            pc = await computers.find(session, "pc-1")
            await collections.set_static(session, pilot, [pc], add=False, actor="test")
        await check(sessions, {"Pilot": set(), "Subnet 10.1 but not Pilot": {"pc-1"}})

        async with sessions() as session, session.begin():
            pc = await computers.find(session, "pc-1")
            ts = TaskServer(
                computer_id=pc.id, name="ts-1", url="http://x", credential_hash="x",
                registered_at=1.0,
            )  # fmt: skip
            session.add(ts)
        await check(sessions, {"Task Servers": {"pc-1"}, "Approved Task Servers": set()})
        async with sessions() as session, session.begin():
            ts = await session.scalar(select(TaskServer))
            assert ts is not None
            ts.approval = "approved"
        await check(sessions, {"Approved Task Servers": {"pc-1"}})
        async with sessions() as session, session.begin():
            await session.execute(delete(TaskServer))
            await session.execute(delete(Computer).where(Computer.name == "db-1"))
            # Core statements pass no hook: this one says what it changed.
            pc = await computers.find(session, "pc-1")
            await session.run_sync(lambda s: membership.refresh(s.connection(), [pc.id]))
        await check(sessions, {"Task Servers": set(), "All Computers": {"db-2", "pc-1"}})

    run(db_url, body)


def test_a_new_collection_is_evaluated_over_the_fleet_and_rollback_keeps_nothing(
    db_url: str,
) -> None:
    async def body(sessions: Sessions) -> None:
        for n in range(30):
            await enrol(sessions, f"pc-{n:02}", f"10.{n % 3}.0.{n}/16", rack=str(n % 4))
        async with sessions() as session, session.begin():
            await collections.create(session, "Rack 1", "", {"fact": {"rack": "1"}}, "test")
            await collections.create(
                session, "Rack 1 or Pilot", "", {"include": ["Rack 1"]}, "test"
            )
        rack1 = {f"pc-{n:02}" for n in range(30) if n % 4 == 1}
        await check(sessions, {"Rack 1": rack1, "Rack 1 or Pilot": rack1})

        async with sessions() as session, session.begin():
            await collections.create(session, "Rack 2", "", {"fact": {"rack": "2"}}, "test")
            pc = await computers.find(session, "pc-01")
            pc.name = "web-01"
            await session.flush()
            await session.rollback()
        await check(sessions, {"Web": set()})
        assert "Rack 2" not in await stored(sessions)

    run(db_url, body)


def test_computers_inserted_in_bulk_are_computed_at_start(db_url: str) -> None:
    async def body(sessions: Sessions) -> None:
        async with sessions() as session, session.begin():
            rows = [
                {"name": f"web-{n}", "hardware_id": f"hw-{n}", "addresses": [f"10.1.0.{n}/16"],
                 "facts": {}, "enrolled_at": 1.0}
                for n in range(5)
            ]  # fmt: skip
            await session.execute(insert(Computer), rows)
        assert (await stored(sessions))["All Computers"] == set()
        async with sessions() as session, session.begin():
            await collections.ensure_builtins(session)  # what every NS start runs
        web = {f"web-{n}" for n in range(5)}
        await check(sessions, {"All Computers": web, "Web": web, "Subnet 10.1 but not Pilot": web})

    run(db_url, body)


def test_readers_use_the_stored_membership(db_url: str) -> None:
    async def body(sessions: Sessions) -> None:
        ids = {name: await enrol(sessions, name, "10.3.0.1/16") for name in ("web-b", "web-a", "x")}
        async with sessions() as session, session.begin():
            web = await collections.get(session, "Web")
            assert [c.name for c in await collections.members(session, web)] == ["web-a", "web-b"]
            assert [c.name for c in await collections.members(session, web, limit=1)] == ["web-a"]
            assert await collections.counts(session, web) == {web.id: 2}
            refs = await collections.member_refs(session, web)
            assert refs == [collections.MemberRef(ids["web-b"], None), (ids["web-a"], None)]
            targets = await runs.resolve_targets(session, ["Web", "computer:x"])
            assert sorted(t.id for t in targets) == sorted(ids.values())
            counts = await collections.counts(session)
            pilot = await collections.get(session, "Pilot")
            assert counts[web.id] == 2 and counts.get(pilot.id, 0) == 0
            # A query of ids (a task server's computers) as well as a list of ids.
            only = select(Computer.id).where(Computer.name.like("web-%"))
            some = await collections.load_membership(session, only)
            assert set(some.of) == {ids["web-a"], ids["web-b"]}
            x = await computers.find(session, "x")
            one = await collections.load_membership(session, [x.id])
            assert one.collections_of(x) == ["All Computers"]
            assert one.contains("All Computers", x) and not one.contains("Web", x)
            named = await collections.load_membership(session, only, names=["Web", "Pilot"])
            assert named.of == {ids["web-a"]: {"Web"}, ids["web-b"]: {"Web"}}
            assert (await collections.load_membership(session, only, names=[])).of == {}
            document = {"entries": [{"collection": "Web", "task_request_interval_min": 9}]}
            await drafts.save_draft(session, drafts.AGENT_CONFIG, document, "test")
            await drafts.apply(session, drafts.AGENT_CONFIG, "test")
            config = (await drafts.applied(session)).agent_config
            everyone = await collections.load_membership(session)
            for computer in (await session.scalars(select(Computer))).all():
                settings = config.settings_for(everyone, computer)
                minutes = 9 if computer.name.startswith("web-") else 5
                assert settings.task_request_interval_s == minutes * 60

    run(db_url, body)


def _postgres_only(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time: there is nothing to interleave")


def test_two_transactions_changing_one_computer_take_turns(db_url: str) -> None:
    """A static membership added while the computer's facts change in another
    transaction: the second refresh waits for the first and reads what it committed."""
    _postgres_only(db_url)

    async def body(sessions: Sessions) -> None:
        pc = await enrol(sessions, "web-9", "10.9.0.1/16")
        async with sessions() as first:
            await first.begin()
            computer = await first.get(Computer, pc)
            assert computer is not None
            computer.name = "db-9"
            await first.flush()  # refreshed, and the row stays locked until the commit

            async def add_static() -> None:
                async with sessions() as second, second.begin():
                    pilot = await second.scalar(
                        select(Collection).where(Collection.name == "Pilot")
                    )
                    assert pilot is not None
                    second.add(CollectionMember(collection_id=pilot.id, computer_id=pc))

            other = asyncio.create_task(add_static())
            await asyncio.sleep(0.5)
            assert not other.done()  # waiting for the computer's row
            await first.commit()
            await asyncio.wait_for(other, 10)
        await check(sessions, {"Web": set(), "Pilot": {"db-9"}, "Pilot or web": {"db-9"}})

    run(db_url, body)


def test_an_approval_while_the_task_server_registers_again_does_not_deadlock(
    db_url: str,
) -> None:
    """Registration changes the computer, then the task_server row; an approval changes
    that row, then refreshes the computer. Each takes the computer's lock before it
    writes, so the approval waits instead of holding the row the registration needs."""
    _postgres_only(db_url)

    async def body(sessions: Sessions) -> None:
        pc = await enrol(sessions, "ts-host", "10.5.0.1/16")
        async with sessions() as session, session.begin():
            session.add(
                TaskServer(computer_id=pc, name="ts-1", url="http://a", credential_hash="x",
                           registered_at=1.0)
            )  # fmt: skip
        async with sessions() as registering:
            await registering.begin()
            computer = await registering.get(Computer, pc)
            assert computer is not None
            computer.name = "web-ts"
            await registering.flush()

            async def approve() -> None:
                async with sessions() as approving, approving.begin():
                    ts = await approving.scalar(select(TaskServer))
                    assert ts is not None
                    ts.approval = "approved"

            other = asyncio.create_task(approve())
            await asyncio.sleep(0.5)
            ts = await registering.scalar(select(TaskServer))
            assert ts is not None
            ts.url = "http://b"
            await registering.flush()  # would wait for the approval, which waits for us
            await registering.commit()
            await asyncio.wait_for(other, 10)
        await check(sessions, {"Approved Task Servers": {"web-ts"}, "Web": {"web-ts"}})

    run(db_url, body)


def test_an_enrolment_waits_for_a_collection_being_created(db_url: str) -> None:
    _postgres_only(db_url)

    async def body(sessions: Sessions) -> None:
        async with sessions() as first:
            await first.begin()
            await collections.create(first, "Rack 7", "", {"fact": {"rack": "7"}}, "test")

            other = asyncio.create_task(enrol(sessions, "pc-7", "10.7.0.7/16", rack="7"))
            await asyncio.sleep(0.5)
            assert not other.done()  # would evaluate without "Rack 7"
            await first.commit()
            await asyncio.wait_for(other, 10)
        await check(sessions, {"Rack 7": {"pc-7"}})

    run(db_url, body)


def test_load_membership_of_many_ids(db_url: str) -> None:
    async def body(sessions: Sessions) -> None:
        async with sessions() as session, session.begin():
            rows: list[dict[str, Any]] = [
                {"name": f"pc-{n}", "hardware_id": f"hw-{n}", "enrolled_at": 1.0}
                for n in range(4500)
            ]
            await session.execute(insert(Computer), rows)
            await collections.ensure_builtins(session)
            ids = list((await session.scalars(select(Computer.id))).all())
            found = await collections.load_membership(session, ids)  # more than one chunk
            assert len(found.of) == 4500
            assert all(names == {"All Computers"} for names in found.of.values())

    run(db_url, body)
