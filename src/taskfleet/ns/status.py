"""Apply status events to instances, each exactly once (R8), a batch at a time.

An event id is recorded in ``status_seen`` in the same transaction that
applies it, so a resend (after a lost acknowledgement, a task-server restart,
an agent restart) is recognised and ignored. The database decides what is new:
one ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` per chunk of a batch, then
one bulk ``UPDATE`` of the instances those events move. States only move
forward. The cost is a few statements per batch, not per event.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
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
    allowed: set[int] = set()
    for chunk in _chunks(wanted):
        allowed.update(
            (
                await session.scalars(
                    select(AssignmentRecord.computer_id)
                    .where(
                        AssignmentRecord.task_server_id == via_task_server,
                        AssignmentRecord.computer_id.in_(chunk),
                    )
                    .distinct()
                )
            ).all()
        )
    return allowed


async def _load(session: AsyncSession, instance_ids: list[int]) -> dict[int, _Row]:
    rows: dict[int, _Row] = {}
    postgres = session.get_bind().dialect.name == "postgresql"
    for chunk in _chunks(sorted(instance_ids)):
        query = select(
            Instance.id,
            Instance.computer_id,
            Instance.state,
            Instance.received_at,
            Instance.started_at,
            Instance.status_count,
        ).where(Instance.id.in_(chunk))
        if postgres:
            # Locked in id order, so two concurrent batches cannot deadlock.
            query = query.order_by(Instance.id).with_for_update()
        for r in (await session.execute(query)).all():
            rows[r.id] = _Row(
                r.id,
                r.computer_id,
                InstanceState(r.state),
                r.received_at,
                r.started_at,
                r.status_count,
            )
    return rows


async def _first_sightings(
    session: AsyncSession, events: list[StatusEvent], via: int | None
) -> set[str]:
    """Record the events' ids; the ids the database had not seen before."""
    postgres = session.get_bind().dialect.name == "postgresql"
    insert = postgresql.insert if postgres else sqlite.insert
    now = time.time()
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
            insert(StatusSeen)
            .values(values)
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(StatusSeen.id)
        )
        fresh.update((await session.scalars(statement)).all())
    return fresh


async def _write_back(session: AsyncSession, rows: list[_Row]) -> None:
    progress = [
        {
            "id": r.id,
            "state": r.state.value,
            "received_at": r.received_at,
            "started_at": r.started_at,
            "status_count": r.status_count,
        }
        for r in rows
        if r.finished is None
    ]
    finished = [
        {
            "id": r.id,
            "state": r.state.value,
            "received_at": r.received_at,
            "started_at": r.started_at,
            "status_count": r.status_count,
            "finished_at": r.finished[0],
            "return_code": r.finished[1],
            "output": r.finished[2],
        }
        for r in rows
        if r.finished is not None
    ]
    # ORM bulk UPDATE by primary key: one executemany per shape of row.
    for group in (progress, finished):
        for chunk in _chunks(group):
            await session.execute(update(Instance), chunk)


async def ingest(
    session: AsyncSession, events: list[StatusEvent], via_task_server: int | None
) -> StatusAck:
    """Apply events relayed by ``via_task_server`` (None: the agent talks to the NS itself)."""
    accepted: list[str] = []
    rejected: list[str] = []
    candidates: list[StatusEvent] = []
    in_batch: set[str] = set()
    for event in events:
        if not _well_formed(event):
            rejected.append(str(event.id)[:MAX_EVENT_ID])
        elif event.id in in_batch:
            accepted.append(event.id)  # sent twice in one batch: the first one counts
        else:
            in_batch.add(event.id)
            candidates.append(event)
    if via_task_server is not None and candidates:
        allowed = await _allowed_computers(session, candidates, via_task_server)
        for event in [e for e in candidates if e.computer_id not in allowed]:
            log.warning(
                "task server %s relayed a status for computer %s it never served",
                via_task_server,
                event.computer_id,
            )
            rejected.append(event.id)
        candidates = [e for e in candidates if e.computer_id in allowed]
    rows = await _load(session, list({e.instance_id for e in candidates}))
    applicable: list[StatusEvent] = []
    for event in candidates:
        row = rows.get(event.instance_id)
        if row is None or row.computer_id != event.computer_id:
            rejected.append(event.id)
        else:
            applicable.append(event)
    fresh = await _first_sightings(session, applicable, via_task_server) if applicable else set()
    for event in applicable:
        if event.id in fresh:
            rows[event.instance_id].apply(event)
        accepted.append(event.id)
    await _write_back(session, [r for r in rows.values() if r.changed])
    return StatusAck(accepted=accepted, rejected=rejected)
