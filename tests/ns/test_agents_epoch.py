"""The agents epoch and the agent map, on SQLite and PostgreSQL: a task server that sees
a new epoch reloads its map, so the epoch must never run ahead of the rows it reads."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select, update
from starlette.requests import Request

from taskfleet.ns import api_taskserver, collections, identity
from taskfleet.ns.state import NSState, agents_changed
from taskfleet.protocol.messages import AgentMap
from taskfleet.storage.models import CollectionMember, Computer
from tests.ns.test_assignment import computer, run, task_server


def as_task_server(state: NSState) -> Request:
    """What the map's route reads of its request: the NS's state."""
    return Request({"type": "http", "app": SimpleNamespace(state=SimpleNamespace(ns=state))})


async def agent_map(state: NSState, ts_id: int) -> AgentMap:
    return await api_taskserver.agents(as_task_server(state), ts_id)


async def assigned(state: NSState, name: str, host: int, ts_id: int) -> int:
    """A computer with a credential, assigned to the task server."""
    computer_id = await computer(state, name, host)
    async with state.session() as session:
        await session.execute(
            update(Computer)
            .where(Computer.id == computer_id)
            .values(task_server_id=ts_id, credential_hash="hash-of-its-secret")
        )
    return computer_id


def test_a_map_that_carries_the_new_epoch_holds_the_change(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def body(state: NSState) -> None:
        # Given a task server with pc-1 in its agent map
        ts = await task_server(state, "ts-1", 2, client_limit=10)
        pc = await assigned(state, "pc-1", 50, ts)
        before = await agent_map(state, ts)
        assert [a.computer_id for a in before.agents] == [pc]

        # When an admin resets pc-1 (its credential is void; the epoch moves once that
        # has committed) while the task server is reading its map: after the computers'
        # rows, before the reply
        original = api_taskserver.load_membership
        raced: list[int] = []

        async def reset_meanwhile(*args: Any, **kwargs: Any) -> Any:
            if not raced:
                await identity.reset_computer(state, "pc-1", "admin")
                raced.append(state.agents_epoch)
            return await original(*args, **kwargs)

        monkeypatch.setattr(api_taskserver, "load_membership", reset_meanwhile)
        during = await agent_map(state, ts)
        monkeypatch.setattr(api_taskserver, "load_membership", original)

        # Then that map may hold the old rows, but not under the new epoch: the task
        # server sees the new epoch at its next heartbeat and reloads
        [new_epoch] = raced
        assert new_epoch != before.agents_epoch
        holds_old_rows = [a.computer_id for a in during.agents] == [pc]
        assert not (holds_old_rows and during.agents_epoch == new_epoch)
        assert during.agents_epoch == before.agents_epoch
        # ... and the map it reloads carries the new epoch without pc-1's credential
        after = await agent_map(state, ts)
        assert after.agents_epoch == new_epoch and after.agents == []

    run(db_url, tmp_path, body)


def test_the_epoch_moves_once_a_change_has_committed(db_url: str, tmp_path: Path) -> None:
    async def body(state: NSState) -> None:
        # Given a collection and a computer
        pc = await computer(state, "pc-1", 50)
        async with state.session() as session:
            pilot = await collections.create(session, "Pilot", "", {}, "admin")
        epoch = state.agents_epoch

        # When a transaction adds the computer to it (static membership)
        async with state.session() as session:
            found = await session.get(Computer, pc)
            assert found is not None
            await collections.set_static(session, pilot, [found], add=True, actor="admin")
            agents_changed(session)  # a second change in the same transaction
            # Then the epoch has not moved while the change is uncommitted
            assert state.agents_epoch == epoch

        # ... it has moved once after the commit, and whoever sees it sees the member
        assert state.agents_epoch == epoch + 1
        async with state.session() as session:
            members = await session.scalars(
                select(CollectionMember.computer_id).where(
                    CollectionMember.collection_id == pilot.id
                )
            )
            assert members.all() == [pc]

        # When a transaction that changed agents rolls back
        with pytest.raises(RuntimeError):
            async with state.session() as session:
                agents_changed(session)
                raise RuntimeError("rolled back")
        # Then the epoch stays
        assert state.agents_epoch == epoch + 1

    run(db_url, tmp_path, body)
