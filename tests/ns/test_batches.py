"""Group commit (ns/batches.py): what arrives during a batch goes in the next, one
failure stays with its own request."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from taskfleet.errors import InvalidInput, TaskfleetError
from taskfleet.ns.batches import Batcher


class Writer:
    """A batch runner that records each batch and holds the first until released."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.release = asyncio.Event()

    async def run(self, items: Sequence[str]) -> list[str | TaskfleetError]:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            await self.release.wait()
        if "breaks" in items and len(items) > 1:
            raise RuntimeError("a constraint the batch broke")
        return [InvalidInput(f"{i} is bad") if i.startswith("bad") else i.upper() for i in items]


async def _submit_all(batcher: Batcher[str, str], items: list[str], writer: Writer) -> list[object]:
    first = asyncio.ensure_future(batcher.submit(items[0]))
    while not writer.batches:  # the first batch starts at once, with the first item alone
        await asyncio.sleep(0)
    rest = [asyncio.ensure_future(batcher.submit(item)) for item in items[1:]]
    await asyncio.sleep(0)  # they all queue up while the first batch is being written
    writer.release.set()
    return list(await asyncio.gather(first, *rest, return_exceptions=True))


def test_requests_arriving_during_a_batch_go_together_in_the_next() -> None:
    async def body() -> None:
        # Given a batcher whose first batch is still being written
        writer = Writer()
        batcher = Batcher("words", writer.run, max_size=3)
        # When five more requests arrive meanwhile
        results = await _submit_all(batcher, ["a", "b", "c", "d", "e", "f"], writer)
        # Then the first went alone at once, the others in batches of at most three
        assert writer.batches == [["a"], ["b", "c", "d"], ["e", "f"]]
        assert results == ["A", "B", "C", "D", "E", "F"]
        assert (batcher.batches, batcher.items) == (3, 6)

    asyncio.run(body())


def test_requests_with_the_same_key_never_share_a_batch() -> None:
    async def body() -> None:
        # Given a batcher keyed by the first letter (one computer asking twice at once)
        writer = Writer()
        batcher = Batcher("words", writer.run, key=lambda item: item[0])
        # When 'x1' and 'x2' arrive during the first batch
        results = await _submit_all(batcher, ["a", "x1", "b", "x2"], writer)
        # Then 'x2' waits for the batch after the one with 'x1', in order
        assert writer.batches == [["a"], ["x1", "b"], ["x2"]]
        assert results == ["A", "X1", "B", "X2"]

    asyncio.run(body())


def test_one_bad_request_fails_alone() -> None:
    async def body() -> None:
        writer = Writer()
        batcher = Batcher("words", writer.run)
        # When one request is refused for itself, and another breaks its whole batch
        results = await _submit_all(batcher, ["a", "bad", "b", "breaks", "c"], writer)
        # Then the refused one gets its own error; the batch that broke is tried again one
        # by one, so only the request that breaks it alone fails
        assert results[0] == "A"
        assert isinstance(results[1], InvalidInput)
        assert results[2] == "B" and results[4] == "C"
        assert results[3] == "BREAKS"  # alone it goes through (it broke only a batch)
        assert writer.batches[1] == ["bad", "b", "breaks", "c"]
        assert writer.batches[2:] == [["bad"], ["b"], ["breaks"], ["c"]]

    asyncio.run(body())


def test_a_runner_that_always_fails_fails_each_request() -> None:
    async def broken(items: Sequence[str]) -> list[str | TaskfleetError]:
        raise RuntimeError("database gone")

    async def body() -> None:
        batcher: Batcher[str, str] = Batcher("words", broken)
        results = await asyncio.gather(*(batcher.submit(i) for i in "abc"), return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results)
        # ... and the next request starts a new batch (nothing is left stuck)
        with pytest.raises(RuntimeError):
            await batcher.submit("d")

    asyncio.run(body())
