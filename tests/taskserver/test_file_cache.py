"""The task server's file cache: fetched once, verified before serving, only to agents
handed work copying the file."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import IO

import pytest

from taskfleet.errors import Forbidden, Unavailable
from taskfleet.protocol.messages import WorkItem
from taskfleet.taskserver.file_cache import FileCache

CONTENT = b"cached file\n" * 10_000
SHA = hashlib.sha256(CONTENT).hexdigest()


class FakeNS:
    def __init__(self, body: bytes = CONTENT) -> None:
        self.body = body
        self.fetches = 0

    async def fetch(self, sha256: str, fh: IO[bytes]) -> None:
        self.fetches += 1
        fh.write(self.body)


def copy_item(sha: str = SHA) -> WorkItem:
    return WorkItem(7, 3, "copy-file", {"sha256": sha, "path": "/x"}, 60.0)


async def read(cache: FileCache, computer_id: int = 1) -> bytes:
    opened = await cache.open(computer_id, SHA)
    return b"".join([piece async for piece in opened.chunks])


async def test_fetched_once_and_served_to_the_agents_handed_the_work(tmp_path: Path) -> None:
    ns = FakeNS()
    cache = FileCache(tmp_path, ns.fetch)
    cache.grant(1, [copy_item()])
    assert await read(cache) == CONTENT
    assert await read(cache) == CONTENT
    assert ns.fetches == 1 and (tmp_path / SHA).read_bytes() == CONTENT
    # another agent of this task server, handed no such work, is refused
    with pytest.raises(Forbidden):
        await cache.open(2, SHA)
    # and work of another type grants nothing
    cache.grant(2, [WorkItem(8, 3, "run-script", {"sha256": SHA}, 60.0)])
    with pytest.raises(Forbidden):
        await cache.open(2, SHA)


async def test_a_corrupted_entry_is_dropped_and_fetched_again(tmp_path: Path) -> None:
    ns = FakeNS()
    cache = FileCache(tmp_path, ns.fetch)
    cache.grant(1, [copy_item()])
    assert await read(cache) == CONTENT
    (tmp_path / SHA).write_bytes(b"X" + CONTENT[1:])  # same size: only the hash tells
    assert await read(cache) == CONTENT
    assert ns.fetches == 2 and cache.dropped == 1


async def test_a_copy_that_does_not_match_is_refused_and_not_kept(tmp_path: Path) -> None:
    ns = FakeNS(b"not the file")
    cache = FileCache(tmp_path, ns.fetch)
    cache.grant(1, [copy_item()])
    with pytest.raises(Unavailable, match="refused"):
        await cache.open(1, SHA)
    assert not (tmp_path / SHA).exists()
    assert list((tmp_path / "tmp").iterdir()) == []


async def test_an_agent_without_a_grant_here_is_served_when_the_ns_confirms(
    tmp_path: Path,
) -> None:
    # (the task server restarted since it handed the work out, or the agent failed over)
    asked: list[tuple[int, str]] = []

    async def confirm(computer_id: int, sha256: str) -> bool:
        asked.append((computer_id, sha256))
        return computer_id == 1

    cache = FileCache(tmp_path, FakeNS().fetch, confirm)
    assert await read(cache, 1) == CONTENT
    assert await read(cache, 1) == CONTENT  # confirmed once, granted for a while
    with pytest.raises(Forbidden):
        await cache.open(2, SHA)
    assert asked == [(1, SHA), (2, SHA)]
