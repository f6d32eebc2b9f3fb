"""The Task Servers policy's editing steps (ns.drafts), shared by the console, the API
and the CLI, on SQLite and PostgreSQL alike: each changes the draft only, a mistake
changes nothing, and what is applied is read back typed (ns.policy, ns.agent_config)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from taskfleet.errors import InvalidInput, NotFound, TaskfleetError
from taskfleet.ns import collections, computers, drafts
from taskfleet.ns.agent_config import AgentConfig, ConfigEntry
from taskfleet.ns.policy import Policy, PolicyEntry
from taskfleet.protocol.messages import Facts
from taskfleet.storage import database, migrate
from taskfleet.storage.models import TaskServer

Sessions = async_sessionmaker[AsyncSession]
ALL, SERVERS = "All Computers", "Task Servers"  # built-in collections: no setup needed


def run(db_url: str, body: Callable[[Sessions], Awaitable[None]]) -> None:
    async def go() -> None:
        engine = database.create_engine(db_url)
        try:
            await migrate.upgrade(engine)
            sessions = database.sessionmaker(engine)
            async with sessions() as session, session.begin():
                await collections.ensure_builtins(session)
                for host, name in enumerate(("ts-a", "ts-b", "ts-c"), start=1):
                    facts = Facts(name=name, hardware_id=f"hw-{name}", addresses=[f"10.0.0.{host}"])
                    computer, _ = await computers.upsert(session, facts)
                    session.add(
                        TaskServer(
                            computer_id=computer.id,
                            name=name,
                            url=f"http://{name}",
                            approval="approved",
                            credential_hash="-",
                            heartbeat_period_s=60,
                            registered_at=time.time(),
                        )
                    )
            await body(sessions)
        finally:
            await engine.dispose()

    asyncio.run(go())


async def step(sessions: Sessions, name: str, *args: Any) -> dict[str, Any]:
    """One editing step of ns.drafts, in its own transaction, as an admin."""
    async with sessions() as session, session.begin():
        saved: dict[str, Any] = await getattr(drafts, name)(session, *args, "admin")
        return saved


async def draft(sessions: Sessions) -> list[tuple[str, list[str]]]:
    async with sessions() as session:
        document = await drafts.draft_document(session, drafts.POLICY)
    return [(e["collection"], e["task_servers"]) for e in document["entries"]]


def test_each_step_edits_the_draft_and_apply_makes_it_the_typed_policy(db_url: str) -> None:
    async def body(sessions: Sessions) -> None:
        # Given two task servers on All Computers' list and one on Task Servers'
        await step(sessions, "add_task_server", ALL, "ts-a")
        await step(sessions, "add_task_server", ALL, "ts-b")
        saved = await step(sessions, "add_task_server", SERVERS, "ts-c")
        # Then the step answers the draft as JSON, as the API shows it
        assert saved == {
            "entries": [
                {"collection": ALL, "task_servers": ["ts-a", "ts-b"]},
                {"collection": SERVERS, "task_servers": ["ts-c"]},
            ]
        }
        # When ts-b moves up, and Task Servers' list moves before All Computers'
        await step(sessions, "move_task_server", ALL, "ts-b", "up")
        await step(sessions, "move_entry", drafts.POLICY, SERVERS, "up")
        # Then the draft says so
        assert await draft(sessions) == [(SERVERS, ["ts-c"]), (ALL, ["ts-b", "ts-a"])]
        # When a list is put in a new order, as dragging leaves it
        await step(sessions, "order_task_servers", ALL, ["ts-a", "ts-b"])
        assert await draft(sessions) == [(SERVERS, ["ts-c"]), (ALL, ["ts-a", "ts-b"])]
        # When the only task server on a list is removed: the emptied list goes
        await step(sessions, "remove_task_server", SERVERS, "ts-c")
        assert await draft(sessions) == [(ALL, ["ts-a", "ts-b"])]
        # Then nothing is applied until Apply
        async with sessions() as session:
            assert (await drafts.applied(session)).policy == Policy()
            assert await drafts.unapplied(session, drafts.POLICY)
        # When applied: readers get the typed policy
        async with sessions() as session, session.begin():
            await drafts.apply(session, drafts.POLICY, "admin")
        async with sessions() as session:
            applied = await drafts.applied(session)
        assert applied.policy == Policy((PolicyEntry(ALL, ("ts-a", "ts-b")),))
        assert applied.documents[drafts.POLICY] == applied.policy.to_json()

    run(db_url, body)


@pytest.mark.parametrize(
    ("name", "args", "error", "message"),
    [
        ("add_task_server", (ALL, "ts-a"), InvalidInput, "on the list for 'All Computers' already"),
        ("add_task_server", (ALL, ""), InvalidInput, "choose a collection and a task server"),
        ("add_task_server", (ALL, "ts-x"), NotFound, "no task server named 'ts-x'"),
        ("add_task_server", ("Nowhere", "ts-a"), NotFound, "Nowhere"),
        ("move_task_server", (ALL, "ts-c", "up"), InvalidInput, "ts-c is not on the list for 'All"),
        ("move_task_server", (ALL, "ts-a", "left"), InvalidInput, "direction must be up or down"),
        ("move_task_server", (SERVERS, "ts-a", "up"), InvalidInput, "no list for collection 'Task"),
        ("order_task_servers", (ALL, ["ts-b"]), InvalidInput, "must hold the same task servers"),
        ("remove_task_server", (SERVERS, "ts-a"), InvalidInput, "the policy has no list"),
    ],
)  # fmt: skip
def test_a_mistaken_step_says_what_is_wrong_and_changes_nothing(
    db_url: str, name: str, args: tuple[Any, ...], error: type[TaskfleetError], message: str
) -> None:
    async def body(sessions: Sessions) -> None:
        # Given a draft with ts-a and ts-b on All Computers' list
        await step(sessions, "add_task_server", ALL, "ts-a")
        await step(sessions, "add_task_server", ALL, "ts-b")
        # When a step is mistaken: Then it says what is wrong
        with pytest.raises(error) as raised:
            await step(sessions, name, *args)
        assert message in raised.value.message
        # And the draft is as it was
        assert await draft(sessions) == [(ALL, ["ts-a", "ts-b"])]

    run(db_url, body)


def test_agent_configuration_entries_move_in_priority_and_read_back_typed(db_url: str) -> None:
    async def body(sessions: Sessions) -> None:
        # Given two entries in the draft agent configuration
        kind = drafts.AGENT_CONFIG
        async with sessions() as session, session.begin():
            for name, minutes in ((ALL, 5), (SERVERS, 2)):
                entry = {"collection": name, "task_request_interval_min": minutes}
                await drafts.set_entry(session, kind, entry, None, "admin")
        # When the second moves up
        await step(sessions, "move_entry", kind, SERVERS, "up")
        # Then it comes first, with every setting typed (the defaults filled in)
        async with sessions() as session:
            config = await drafts.draft_agent_config(session)
        assert config == AgentConfig(
            (ConfigEntry(SERVERS, task_request_interval_min=2.0), ConfigEntry(ALL))
        )
        assert config.settings_in({ALL, SERVERS}).task_request_interval_s == 120.0
        assert config.settings_in(set()).task_request_interval_s == 300.0
        # And a move that cannot be made says so
        with pytest.raises(InvalidInput, match="cannot move 'Nowhere' up"):
            await step(sessions, "move_entry", kind, "Nowhere", "up")

    run(db_url, body)
