"""Holding instances back while their computer's maintenance windows are closed.

Delivery (``runs.deliver_batch``, ``work_waiting``, ``computers_with_work``,
``deliver``) runs often, for thousands of computers. It must not cost a query per
computer per poll, so:

* every window of every collection (few rows) is kept in memory per NS process,
  read again at most every ``RELOAD_S`` (at once on the replica that changed them);
* which of those collections are open *now* is worked out in memory from the
  clock, once per second;
* ``clause`` turns that into one SQL condition added to the delivery query itself
  (two EXISTS over the indexed membership table, one over the run), or no
  condition at all when no collection has windows: the common case costs nothing.

An instance is deliverable when its run ignores windows, or its computer is in no
collection with windows, or in one whose window is open. A window that opens
changes no row, so nobody would be told: the ``retickle`` duty notices openings
and notifies the task servers (and the NS's own agents) of the computers with
work in those collections (R6).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from taskfleet.ns.state import NSState
from taskfleet.ns.windows import Window, next_open, open_collections
from taskfleet.protocol.messages import InstanceState
from taskfleet.storage.models import (
    CollectionMembership,
    Computer,
    Instance,
    MaintenanceWindow,
    Run,
)

log = logging.getLogger("taskfleet.ns.window_hold")
_RUN = aliased(Run)
RELOAD_S = 10.0  # a window changed on another replica holds there within this
RETICKLE_EVERY_S = 5.0


@dataclass
class Book:
    by_collection: dict[int, list[Window]] = field(default_factory=dict)
    loaded_at: float = float("-inf")
    open_second: int = -1
    open_ids: frozenset[int] = frozenset()

    def open_now(self, now: float) -> frozenset[int]:
        if int(now) != self.open_second:
            self.open_ids = frozenset(open_collections(self.by_collection, now))
            self.open_second = int(now)
        return self.open_ids


# One book per database (by URL) in this process: the NS has one; tests may have more.
_books: dict[str, Book] = {}


def _key(session: AsyncSession) -> str:
    return str(session.get_bind().engine.url)


def forget(session: AsyncSession) -> None:
    """Windows changed through this process: read them again at the next delivery."""
    _books.pop(_key(session), None)


def forget_all() -> None:
    _books.clear()


def to_window(row: MaintenanceWindow) -> Window:
    return Window(row.start_day, row.start_s, row.end_day, row.end_s, row.timezone)


async def book(session: AsyncSession, now: float | None = None) -> Book:
    now = time.monotonic() if now is None else now
    found = _books.get(_key(session))
    if found is None or now - found.loaded_at >= RELOAD_S:
        by_collection: dict[int, list[Window]] = {}
        for row in (await session.scalars(select(MaintenanceWindow))).all():
            by_collection.setdefault(row.collection_id, []).append(to_window(row))
        found = _books[_key(session)] = Book(by_collection, now)
    return found


def _member_of(collection_ids: Iterable[int]) -> Any:
    return exists().where(
        CollectionMembership.computer_id == Instance.computer_id,
        CollectionMembership.collection_id.in_(sorted(collection_ids)),
    )


async def clause(session: AsyncSession) -> Any | None:
    """The condition an instance needs to be delivered now; None: nothing is held."""
    found = await book(session)
    if not found.by_collection:
        return None
    open_ids = found.open_now(time.time())
    allowed = [
        ~_member_of(found.by_collection),
        # (an alias: ``deliver`` joins Run itself, and would correlate it away)
        exists().where(_RUN.id == Instance.run_id, _RUN.ignore_windows.is_(True)),
    ]
    if open_ids:
        allowed.append(_member_of(open_ids))
    return or_(*allowed)


async def waiting_in(
    session: AsyncSession, collection_ids: Iterable[int]
) -> list[tuple[int, int | None]]:
    """(computer, task server) of the computers in these collections with pending work."""
    rows = await session.execute(
        select(Instance.computer_id, Computer.task_server_id)
        .join(Computer, Computer.id == Instance.computer_id)
        .where(Instance.state == InstanceState.PENDING, _member_of(collection_ids))
        .distinct()
    )
    return [(computer_id, ts_id) for computer_id, ts_id in rows.all()]


@dataclass
class Retickler:
    """Remembers which collections were open, and tells of the ones that opened since."""

    was_open: frozenset[int] = frozenset()

    async def round(self, state: NSState) -> int:
        """One look; returns how many computers were told."""
        async with state.session() as session:
            found = await book(session)
            now_open = frozenset(open_collections(found.by_collection, time.time()))
            opened = now_open - self.was_open
            self.was_open = now_open
            if not opened:
                return 0
            waiting = await waiting_in(session, opened)
        if waiting:
            log.info("maintenance windows opened for %d computers with work", len(waiting))
            await state.hub.notify(waiting)
        return len(waiting)


async def restrict(session: AsyncSession, query: Any) -> Any:
    """``query`` over Instance, less the instances held back by closed windows."""
    held = await clause(session)
    return query if held is None else query.where(held)


async def held_until(
    session: AsyncSession, computer_ids: Collection[int], now: float | None = None
) -> dict[int, float]:
    """Of these computers, the ones whose windows hold their work back now (in a
    collection with windows, none of them open), each with when its first window opens.
    For the run page, which says "waiting for window" rather than a bare Pending; the
    instances' state stays Pending. The caller passes only computers whose instance is
    Pending in a run that does not ignore windows."""
    found = await book(session)
    if not found.by_collection or not computer_ids:
        return {}
    now = time.time() if now is None else now
    open_ids = found.open_now(now)
    windowed: dict[int, set[int]] = {}
    ids = sorted(set(computer_ids))
    for start in range(0, len(ids), 1000):  # bound the IN list (a run of 100,000)
        rows = await session.execute(
            select(CollectionMembership.computer_id, CollectionMembership.collection_id).where(
                CollectionMembership.computer_id.in_(ids[start : start + 1000]),
                CollectionMembership.collection_id.in_(sorted(found.by_collection)),
            )
        )
        for computer_id, collection_id in rows.all():
            windowed.setdefault(computer_id, set()).add(collection_id)
    held: dict[int, float] = {}
    for computer_id, collection_ids in windowed.items():
        if collection_ids & open_ids:
            continue  # one of its windows is open: deliverable now
        opens = [next_open(found.by_collection[c], now) for c in collection_ids]
        held[computer_id] = min(o for o in opens if o is not None)
    return held
