"""Stored files and inventory on SQLite and PostgreSQL alike: chunks, reads, who may
fetch, removal, and facts that move a computer between collections."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from taskfleet.errors import Conflict, PayloadTooLarge
from taskfleet.ns import collections, computers, files, inventory, tasks
from taskfleet.protocol.messages import Facts, InstanceState, InventoryReport, TaskType
from taskfleet.storage import database, migrate
from taskfleet.storage.models import CollectionMembership, Instance, Run

Sessions = async_sessionmaker[AsyncSession]
CONTENT = bytes(range(256)) * 9000  # a little over 2 MiB: three chunks


def run(db_url: str, body: Callable[[Sessions], Awaitable[None]]) -> None:
    async def go() -> None:
        engine = database.create_engine(db_url)
        try:
            await migrate.upgrade(engine)
            await body(database.sessionmaker(engine))
        finally:
            await engine.dispose()

    asyncio.run(go())


async def pieces(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_a_file_is_stored_in_chunks_and_read_back(db_url: str, tmp_path: Path) -> None:
    async def body(sessions: Sessions) -> None:
        spooled = await files.spool(pieces(CONTENT), tmp_path)
        assert spooled.sha256 == hashlib.sha256(CONTENT).hexdigest()
        async with sessions() as session, session.begin():
            row = await files.store(session, "blob.bin", spooled, "admin")
        spooled.discard()
        read = b"".join([p async for p in files.content(sessions, row.id)])
        assert read == CONTENT
        async with sessions() as session, session.begin():
            assert (await files.by_sha256(session, spooled.sha256)).name == "blob.bin"
            with pytest.raises(Conflict):
                await files.store(session, "blob.bin", spooled, "admin")

    run(db_url, body)


def test_an_upload_over_the_limit_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    async def go() -> None:
        with pytest.raises(PayloadTooLarge, match="larger than the limit"):
            await files.spool(pieces(CONTENT), tmp_path, limit=1000)

    asyncio.run(go())
    assert list(tmp_path.iterdir()) == []


def test_who_may_fetch_and_removal_while_in_use(db_url: str, tmp_path: Path) -> None:
    async def body(sessions: Sessions) -> None:
        spooled = await files.spool(pieces(b"x" * 10), tmp_path)
        async with sessions() as session, session.begin():
            await files.store(session, "f", spooled, "admin")
            pc, _ = await computers.upsert(session, Facts(name="pc", hardware_id="hw-pc"))
            other, _ = await computers.upsert(session, Facts(name="o", hardware_id="hw-o"))
            params = {"file": "f", "sha256": spooled.sha256, "size": 10, "path": "/tmp/f"}
            task = await tasks.create(session, "copy f", TaskType.COPY_FILE, params, 60, "a")
            run_row = Run(task_id=task.id, created_at=0.0)
            session.add(run_row)
            await session.flush()
            session.add(Instance(run_id=run_row.id, computer_id=pc.id))
            pc.task_server_id = 7
        async with sessions() as session, session.begin():
            sha = spooled.sha256
            assert await files.may_fetch(session, sha, computer_id=pc.id)
            assert not await files.may_fetch(session, sha, computer_id=other.id)
            assert await files.may_fetch(session, sha, task_server_id=7)
            assert not await files.may_fetch(session, sha, task_server_id=8)
            assert not await files.may_fetch(session, "0" * 64, computer_id=pc.id)
            with pytest.raises(Conflict, match="copy f"):
                await files.remove(session, "f", "admin")
            instance = await session.scalar(select(Instance))
            assert instance is not None
            instance.state = InstanceState.SUCCEEDED  # done: its file is no longer served
        async with sessions() as session, session.begin():
            assert not await files.may_fetch(session, spooled.sha256, computer_id=pc.id)

    run(db_url, body)


def test_an_inventory_that_changes_a_fact_moves_the_computer(db_url: str) -> None:
    async def body(sessions: Sessions) -> None:
        async with sessions() as session, session.begin():
            await collections.ensure_builtins(session)
            web = await collections.create(session, "Web", "", {"fact": {"role": "web"}}, "test")
            pc, _ = await computers.upsert(session, Facts(name="pc", hardware_id="hw-pc"))
        facts = Facts(name="pc", hardware_id="hw-pc", facts={"role": "web"})
        async with sessions() as session, session.begin():
            report = InventoryReport(facts=facts, uptime_s=12.5, disk_free_bytes=10)
            assert await inventory.store(session, pc.id, report) is True
        async with sessions() as session, session.begin():
            members = await session.scalars(
                select(CollectionMembership.computer_id).where(
                    CollectionMembership.collection_id == web.id
                )
            )
            assert list(members) == [pc.id]
            # the same facts again change nothing; the measurements are kept apart
            again = InventoryReport(facts=facts, uptime_s=99.0)
            assert await inventory.store(session, pc.id, again) is False
        async with sessions() as session:
            stored = await computers.find(session, "pc")
            assert stored.inventory == {"uptime_s": 99.0} and stored.inventory_at

    run(db_url, body)
