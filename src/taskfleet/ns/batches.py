"""Group commit: requests of one kind that arrive together share one transaction.

After a power cut thousands of agents enrol and ask for their task server within
their start-up window (R11). Each request in its own transaction costs about ten
round trips to the database, and the NS process spends most of its CPU on them.
A ``Batcher`` lets them share: the first request starts a batch at once (no wait
when the NS is quiet); requests arriving while that batch is written queue up and
go together in the next one, up to ``max_size``. So batches grow exactly when the
load does, and one process runs one batch of a kind at a time.

``run`` gets the items and returns one result per item: a value, or the
``TaskfleetError`` for that item alone (bad token, wrong credential...). If it
raises, its transaction wrote nothing, and each item is tried again on its own,
so an item that breaks a batch fails only itself (R12).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

from taskfleet.errors import TaskfleetError, Unavailable

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger("taskfleet.ns.batches")


class Batcher(Generic[T, R]):
    def __init__(
        self,
        name: str,
        run: Callable[[Sequence[T]], Awaitable[Sequence[R | TaskfleetError]]],
        max_size: int = 200,
        key: Callable[[T], Hashable] | None = None,
    ) -> None:
        self.name = name
        self._run = run
        self._max_size = max_size
        # Items with the same key never share a batch (one computer asking twice at once):
        # the later one waits for the next.
        self._key = key
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        # The task writing batches while there are items queued; None when idle.
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0  # batches written, and items in them: what grouping achieved
        self.items = 0

    async def submit(self, item: T) -> R:
        """The result for ``item``, once the batch it went in has committed."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._worker is None:
            self._worker = asyncio.create_task(self._work(), name=f"batches:{self.name}")
        return await future

    async def _work(self) -> None:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while self._queue:
                batch = self._take()
                await self._settle(batch)
                batch = []
        finally:
            # Cancelled (the NS stopping): nobody is left waiting for ever.
            self._worker = None
            for _, future in [*batch, *self._queue]:
                if not future.done():
                    future.set_exception(Unavailable("the notification server is stopping"))
            self._queue.clear()

    def _take(self) -> list[tuple[T, asyncio.Future[R]]]:
        if self._key is None:
            batch = self._queue[: self._max_size]
            del self._queue[: len(batch)]
            return batch
        batch, later, keys = [], [], set()
        for entry in self._queue:
            key = self._key(entry[0])
            if key in keys or len(batch) == self._max_size:
                later.append(entry)
            else:
                keys.add(key)
                batch.append(entry)
        self._queue = later
        return batch

    async def _settle(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        items = [item for item, _ in batch]
        self.batches += 1
        self.items += len(items)
        try:
            results = await self._run(items)
        except Exception as exc:
            if len(batch) == 1:
                _resolve(batch[0][1], exc)
                return
            log.warning(
                "a batch of %d %s failed (%r); each goes again alone", len(batch), self.name, exc
            )
            for one in batch:
                await self._settle([one])
            return
        for (_, future), result in zip(batch, results, strict=True):
            _resolve(future, result)


def _resolve(future: asyncio.Future[R], result: R | BaseException) -> None:
    if future.done():  # its request was cancelled (the client went away)
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
