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
from dataclasses import dataclass, field

from sqlalchemy import any_, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.ns import instance_steps
from taskfleet.ns.status_rows import chunks, first_sightings, ints, load, postgres, write_back
from taskfleet.protocol.messages import StatusAck, StatusEvent
from taskfleet.storage.models import MAX_ID, AssignmentRecord

log = logging.getLogger("taskfleet.ns.status")
MAX_EVENT_ID = 64


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


async def _allowed_computers(
    session: AsyncSession, events: list[StatusEvent], via_task_server: int
) -> set[int]:
    # A task server may relay for computers it serves or has served: a status
    # spooled before a failover must still arrive (R8).
    wanted = sorted({e.computer_id for e in events})
    query = select(AssignmentRecord.computer_id).where(
        AssignmentRecord.task_server_id == via_task_server
    )
    if postgres(session):
        found = await session.scalars(
            query.where(AssignmentRecord.computer_id == any_(ints("wanted"))).distinct(),
            {"wanted": wanted},
        )
        return set(found.all())
    allowed: set[int] = set()
    for chunk in chunks(wanted):
        found = await session.scalars(
            query.where(AssignmentRecord.computer_id.in_(chunk)).distinct()
        )
        allowed.update(found.all())
    return allowed


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
    rows = await load(session, list({e.instance_id for e in candidates}))
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
    fresh = await first_sightings(session, applicable, via_task_server) if applicable else set()
    steps: list[tuple[int, object]] = []  # a client job's step records, of the event ending it
    for event in applicable:
        if event.id in fresh:
            row = rows[event.instance_id]
            ended = row.state.terminal
            row.apply(event)
            if event.steps is not None and not ended and row.finished is not None:
                steps.append((row.id, event.steps))
        done.ack.accepted.append(event.id)
    changed = [r for r in rows.values() if r.changed]
    await write_back(session, changed)
    await instance_steps.store(session, steps)
    done.runs = {r.run_id for r in changed}
    return done
