"""Apply status events to instances, each exactly once (R8).

An event id is recorded in ``status_seen`` in the same transaction that
applies it, so a resend (after a lost acknowledgement, a task-server restart,
an agent restart) is recognised and ignored. States only move forward.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.protocol.messages import InstanceState, StatusAck, StatusEvent
from taskfleet.storage.models import AssignmentRecord, Instance, StatusSeen

log = logging.getLogger("taskfleet.ns.status")
MAX_OUTPUT_CHARS = 1024 * 1024


async def _first_sighting(session: AsyncSession, event: StatusEvent, via: int | None) -> bool:
    values = {
        "id": event.id,
        "instance_id": event.instance_id,
        "received_at": time.time(),
        "via_task_server_id": via,
    }
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    result = await session.execute(
        insert(StatusSeen).values(**values).on_conflict_do_nothing(index_elements=["id"])
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _apply(instance: Instance, event: StatusEvent) -> None:
    try:
        state = InstanceState(event.state)
    except ValueError:
        return
    current = InstanceState(instance.state)
    if current.terminal:
        return
    at = event.at
    if state == InstanceState.RECEIVED:
        instance.received_at = instance.received_at or at
    elif state == InstanceState.RUNNING:
        instance.received_at = instance.received_at or at
        instance.started_at = instance.started_at or at
    elif state.terminal:
        instance.finished_at = at
        instance.return_code = event.return_code
        if event.output is not None:
            instance.output = event.output[:MAX_OUTPUT_CHARS]
    if state.rank > current.rank:
        instance.state = state


async def ingest(
    session: AsyncSession, events: list[StatusEvent], via_task_server: int | None
) -> StatusAck:
    """Apply events relayed by ``via_task_server`` (None: the agent talks to the NS itself)."""
    accepted: list[str] = []
    rejected: list[str] = []
    allowed: set[int] = set()
    if via_task_server is not None:
        # A task server may relay for computers it serves or has served: a status
        # spooled before a failover must still arrive (R8).
        computer_ids = {e.computer_id for e in events}
        allowed = set(
            (
                await session.scalars(
                    select(AssignmentRecord.computer_id).where(
                        AssignmentRecord.task_server_id == via_task_server,
                        AssignmentRecord.computer_id.in_(computer_ids),
                    )
                )
            ).all()
        )
    for event in events:
        if not event.id or len(event.id) > 64:
            rejected.append(event.id)
            continue
        if via_task_server is not None and event.computer_id not in allowed:
            log.warning(
                "task server %s relayed a status for computer %s it never served",
                via_task_server,
                event.computer_id,
            )
            rejected.append(event.id)
            continue
        instance = await session.get(Instance, event.instance_id, with_for_update=True)
        if instance is None or instance.computer_id != event.computer_id:
            rejected.append(event.id)
            continue
        if await _first_sighting(session, event, via_task_server):
            _apply(instance, event)
            instance.status_count += 1
        accepted.append(event.id)
    return StatusAck(accepted=accepted, rejected=rejected)
