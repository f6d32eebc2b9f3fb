"""Apply status events to instances, each exactly once (R8), a batch at a time.

An event id is recorded in ``status_seen`` in the same transaction that
applies it, so a resend (after a lost acknowledgement, a task-server restart,
an agent restart) is recognised and ignored. The database decides what is new:
one ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` per batch (per chunk on
SQLite), then one bulk ``UPDATE`` of the instances those events move. States only move
forward. The cost is a few statements per batch, not per event.

Events this cannot apply are rejected one by one, with a reason, and the rest applied
(R12); ``ns.status_intake`` checks every field before and isolates any event the
database still refuses.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ARRAY, Integer, any_, bindparam, select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.protocol.messages import InstanceState, StatusAck, StatusEvent
from taskfleet.storage.models import MAX_ID, AssignmentRecord, Instance, StatusSeen

log = logging.getLogger("taskfleet.ns.status")
MAX_OUTPUT_CHARS = 1024 * 1024
MAX_EVENT_ID = 64
CHUNK = 1000  # rows per statement: well inside both stores' bound-parameter limits


@dataclass
class _Row:
    """An instance as the batch sees it, changed in memory and written back once."""

    id: int
    computer_id: int
    run_id: int
    state: InstanceState
    received_at: float | None
    started_at: float | None
    status_count: int
    changed: bool = False
    finished: tuple[float, int | None, str | None] | None = None  # at, rc, output

    def apply(self, event: StatusEvent) -> None:
        self.status_count += 1
        self.changed = True
        try:
            state = InstanceState(event.state)
        except ValueError:
            return
        if self.state.terminal:
            return
        at = event.at
        if state == InstanceState.RECEIVED:
            self.received_at = self.received_at or at
        elif state == InstanceState.RUNNING:
            self.received_at = self.received_at or at
            self.started_at = self.started_at or at
        elif state.terminal:
            output = None if event.output is None else event.output[:MAX_OUTPUT_CHARS]
            self.finished = (at, event.return_code, output)
        if state.rank > self.state.rank:
            self.state = state


def _well_formed(event: StatusEvent) -> bool:
    return (
        isinstance(event.id, str)
        and 0 < len(event.id) <= MAX_EVENT_ID
        and isinstance(event.instance_id, int)
        and 0 < event.instance_id <= MAX_ID
        and isinstance(event.computer_id, int)
        and 0 < event.computer_id <= MAX_ID
        and isinstance(event.at, int | float)
        and math.isfinite(event.at)
    )


def _chunks(items: list[Any]) -> list[list[Any]]:
    return [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]


async def _allowed_computers(
    session: AsyncSession, events: list[StatusEvent], via_task_server: int
) -> set[int]:
    # A task server may relay for computers it serves or has served: a status
    # spooled before a failover must still arrive (R8).
    wanted = sorted({e.computer_id for e in events})
    query = select(AssignmentRecord.computer_id).where(
        AssignmentRecord.task_server_id == via_task_server
    )
    if _postgres(session):
        found = await session.scalars(
            query.where(AssignmentRecord.computer_id == any_(_ints("wanted"))).distinct(),
            {"wanted": wanted},
        )
        return set(found.all())
    allowed: set[int] = set()
    for chunk in _chunks(wanted):
        found = await session.scalars(
            query.where(AssignmentRecord.computer_id.in_(chunk)).distinct()
        )
        allowed.update(found.all())
    return allowed


async def _load(session: AsyncSession, instance_ids: list[int]) -> dict[int, _Row]:
    query = select(
        Instance.id,
        Instance.computer_id,
        Instance.run_id,
        Instance.state,
        Instance.received_at,
        Instance.started_at,
        Instance.status_count,
    )
    if _postgres(session):
        # One statement whatever the batch size (an array, not a list of parameters),
        # rows locked in id order so that two concurrent batches cannot deadlock.
        query = query.where(Instance.id == any_(_ints("ids")))
        results = [
            await session.execute(
                query.order_by(Instance.id).with_for_update(), {"ids": sorted(instance_ids)}
            )
        ]
    else:
        results = [
            await session.execute(query.where(Instance.id.in_(chunk)))
            for chunk in _chunks(sorted(instance_ids))
        ]
    return {
        r.id: _Row(
            r.id,
            r.computer_id,
            r.run_id,
            InstanceState(r.state),
            r.received_at,
            r.started_at,
            r.status_count,
        )
        for result in results
        for r in result.all()
    }


# PostgreSQL takes a whole batch as arrays: one short statement, prepared once, instead
# of thousands of bound parameters whose statement text changes with the batch size.
_PG_FIRST_SIGHTINGS = text(
    """
    INSERT INTO status_seen (id, instance_id, received_at, via_task_server_id)
    SELECT u.id, u.instance_id, :at, CAST(:via AS INTEGER)
    FROM unnest(CAST(:ids AS VARCHAR[]), CAST(:instance_ids AS INTEGER[])) AS u(id, instance_id)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
    """
)
_PG_PROGRESS = text(
    """
    UPDATE instance SET state = u.state, received_at = u.received_at,
        started_at = u.started_at, status_count = u.status_count
    FROM unnest(CAST(:ids AS INTEGER[]), CAST(:states AS VARCHAR[]),
        CAST(:received AS FLOAT8[]), CAST(:started AS FLOAT8[]), CAST(:counts AS INTEGER[]))
        AS u(id, state, received_at, started_at, status_count)
    WHERE instance.id = u.id
    """
)
_PG_FINISHED = text(
    """
    UPDATE instance SET state = u.state, received_at = u.received_at,
        started_at = u.started_at, status_count = u.status_count,
        finished_at = u.finished_at, return_code = u.return_code, output = u.output
    FROM unnest(CAST(:ids AS INTEGER[]), CAST(:states AS VARCHAR[]),
        CAST(:received AS FLOAT8[]), CAST(:started AS FLOAT8[]), CAST(:counts AS INTEGER[]),
        CAST(:finished AS FLOAT8[]), CAST(:codes AS INTEGER[]), CAST(:outputs AS TEXT[]))
        AS u(id, state, received_at, started_at, status_count, finished_at, return_code, output)
    WHERE instance.id = u.id
    """
)


async def _first_sightings(
    session: AsyncSession, events: list[StatusEvent], via: int | None
) -> set[str]:
    """Record the events' ids; the ids the database had not seen before."""
    now = time.time()
    if _postgres(session):
        found = await session.scalars(
            _PG_FIRST_SIGHTINGS,
            {
                "at": now,
                "via": via,
                "ids": [e.id for e in events],
                "instance_ids": [e.instance_id for e in events],
            },
        )
        return set(found.all())
    fresh: set[str] = set()
    for chunk in _chunks(events):
        values = [
            {
                "id": e.id,
                "instance_id": e.instance_id,
                "received_at": now,
                "via_task_server_id": via,
            }
            for e in chunk
        ]
        statement = (
            sqlite.insert(StatusSeen)
            .values(values)
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(StatusSeen.id)
        )
        fresh.update((await session.scalars(statement)).all())
    return fresh


async def _write_back(session: AsyncSession, rows: list[_Row]) -> None:
    progress = [r for r in rows if r.finished is None]
    finished = [r for r in rows if r.finished is not None]
    if _postgres(session):
        for group, statement in ((progress, _PG_PROGRESS), (finished, _PG_FINISHED)):
            if not group:
                continue
            values: dict[str, list[Any]] = {
                "ids": [r.id for r in group],
                "states": [r.state.value for r in group],
                "received": [r.received_at for r in group],
                "started": [r.started_at for r in group],
                "counts": [r.status_count for r in group],
            }
            if statement is _PG_FINISHED:
                values["finished"] = [r.finished[0] for r in group if r.finished]
                values["codes"] = [r.finished[1] for r in group if r.finished]
                values["outputs"] = [r.finished[2] for r in group if r.finished]
            await session.execute(statement, values)
        return
    # Elsewhere, ORM bulk UPDATE by primary key: one executemany per shape of row.
    for group in (progress, finished):
        for chunk in _chunks([_as_values(r) for r in group]):
            await session.execute(update(Instance), chunk)


def _as_values(row: _Row) -> dict[str, Any]:
    values: dict[str, Any] = {
        "id": row.id,
        "state": row.state.value,
        "received_at": row.received_at,
        "started_at": row.started_at,
        "status_count": row.status_count,
    }
    if row.finished is not None:
        values["finished_at"], values["return_code"], values["output"] = row.finished
    return values


def _postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _ints(name: str) -> Any:
    return bindparam(name, type_=ARRAY(Integer))


@dataclass
class Ingested:
    ack: StatusAck
    runs: set[int]  # runs whose instances changed: wake their followers after commit
    # Computers the relaying task server never served, whose events were refused: audited.
    foreign: set[int] = field(default_factory=set)

    def reject(self, event_id: str, reason: str) -> None:
        self.ack.rejected.append(event_id)
        self.ack.reasons[event_id] = reason

    def merge(self, other: Ingested) -> None:
        self.ack.accepted += other.ack.accepted
        self.ack.rejected += other.ack.rejected
        self.ack.reasons.update(other.ack.reasons)
        self.runs |= other.runs
        self.foreign |= other.foreign


async def ingest(
    session: AsyncSession, events: list[StatusEvent], via_task_server: int | None
) -> Ingested:
    """Apply events relayed by ``via_task_server`` (None: the agent talks to the NS itself)."""
    done = Ingested(StatusAck(accepted=[]), set())
    candidates: list[StatusEvent] = []
    in_batch: set[str] = set()
    for event in events:
        if not _well_formed(event):
            done.reject(str(event.id)[:MAX_EVENT_ID], "malformed: id, instance, computer or time")
        elif event.id in in_batch:
            done.ack.accepted.append(event.id)  # sent twice in one batch: the first counts
        else:
            in_batch.add(event.id)
            candidates.append(event)
    if via_task_server is not None and candidates:
        allowed = await _allowed_computers(session, candidates, via_task_server)
        for event in [e for e in candidates if e.computer_id not in allowed]:
            done.foreign.add(event.computer_id)
            done.reject(
                event.id,
                f"computer {event.computer_id} is not assigned to this task server "
                "and never was: a task server posts status only for its own agents",
            )
        if done.foreign:
            log.warning(
                "task server %s relayed status for computers it never served: %s",
                via_task_server,
                sorted(done.foreign)[:20],
            )
        candidates = [e for e in candidates if e.computer_id in allowed]
    rows = await _load(session, list({e.instance_id for e in candidates}))
    applicable: list[StatusEvent] = []
    for event in candidates:
        row = rows.get(event.instance_id)
        if row is None:
            done.reject(event.id, f"no instance {event.instance_id} (its run was deleted?)")
        elif row.computer_id != event.computer_id:
            done.reject(
                event.id, f"instance {event.instance_id} is not computer {event.computer_id}'s"
            )
        else:
            applicable.append(event)
    fresh = await _first_sightings(session, applicable, via_task_server) if applicable else set()
    for event in applicable:
        if event.id in fresh:
            rows[event.instance_id].apply(event)
        done.ack.accepted.append(event.id)
    changed = [r for r in rows.values() if r.changed]
    await _write_back(session, changed)
    done.runs = {r.run_id for r in changed}
    return done
