"""Instances as a status batch sees them: read once, changed in memory, written back once.

The statements behind ``ns.status.ingest``: the instances a batch names, locked in id
order on PostgreSQL (two concurrent batches cannot deadlock); the events' ids recorded
in ``status_seen`` (``first_sightings``: the database says which are new); the changed
instances written back in bulk. PostgreSQL takes a whole batch as arrays (one short
statement, prepared once); SQLite in chunks of bound parameters.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ARRAY, Integer, any_, bindparam, select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.protocol.fields import MAX_OUTPUT_LIMIT, capped_output
from taskfleet.protocol.messages import InstanceState, StatusEvent
from taskfleet.storage.models import Instance, StatusSeen

# The most output stored per instance, in characters: the NS's own cap (``ns serve
# --max-output``), below what agents are configured to send if the admin wants; longer
# output is cut with the truncation marker. Set once at start (taskfleet.app), per process.
stored_output_limit = MAX_OUTPUT_LIMIT
CHUNK = 1000  # rows per statement: well inside both stores' bound-parameter limits


@dataclass
class Row:
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
    reason: str | None = None  # the first reason it got (the NS's, or the agent's)

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
            output = None if event.output is None else capped(event.output)
            self.finished = (at, event.return_code, output)
            self.reason = self.reason or event.reason
        if state.rank > self.state.rank:
            self.state = state


def capped(output: str) -> str:
    return capped_output(output, stored_output_limit)


def chunks(items: list[Any]) -> list[list[Any]]:
    return [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]


async def load(session: AsyncSession, instance_ids: list[int]) -> dict[int, Row]:
    query = select(
        Instance.id,
        Instance.computer_id,
        Instance.run_id,
        Instance.state,
        Instance.received_at,
        Instance.started_at,
        Instance.status_count,
        Instance.reason,
    )
    if postgres(session):
        # One statement whatever the batch size (an array, not a list of parameters),
        # rows locked in id order so that two concurrent batches cannot deadlock.
        query = query.where(Instance.id == any_(ints("ids")))
        results = [
            await session.execute(
                query.order_by(Instance.id).with_for_update(), {"ids": sorted(instance_ids)}
            )
        ]
    else:
        results = [
            await session.execute(query.where(Instance.id.in_(chunk)))
            for chunk in chunks(sorted(instance_ids))
        ]
    return {
        r.id: Row(
            r.id,
            r.computer_id,
            r.run_id,
            InstanceState(r.state),
            r.received_at,
            r.started_at,
            r.status_count,
            reason=r.reason,
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
        finished_at = u.finished_at, return_code = u.return_code, output = u.output,
        reason = u.reason
    FROM unnest(CAST(:ids AS INTEGER[]), CAST(:states AS VARCHAR[]),
        CAST(:received AS FLOAT8[]), CAST(:started AS FLOAT8[]), CAST(:counts AS INTEGER[]),
        CAST(:finished AS FLOAT8[]), CAST(:codes AS INTEGER[]), CAST(:outputs AS TEXT[]),
        CAST(:reasons AS VARCHAR[]))
        AS u(id, state, received_at, started_at, status_count, finished_at, return_code, output,
            reason)
    WHERE instance.id = u.id
    """
)


async def first_sightings(
    session: AsyncSession, events: list[StatusEvent], via: int | None
) -> set[str]:
    """Record the events' ids; the ids the database had not seen before."""
    now = time.time()
    if postgres(session):
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
    for chunk in chunks(events):
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


async def write_back(session: AsyncSession, rows: list[Row]) -> None:
    progress = [r for r in rows if r.finished is None]
    finished = [r for r in rows if r.finished is not None]
    if postgres(session):
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
                values["reasons"] = [r.reason for r in group]
            await session.execute(statement, values)
        return
    # Elsewhere, ORM bulk UPDATE by primary key: one executemany per shape of row.
    for group in (progress, finished):
        for chunk in chunks([_as_values(r) for r in group]):
            await session.execute(update(Instance), chunk)


def _as_values(row: Row) -> dict[str, Any]:
    values: dict[str, Any] = {
        "id": row.id,
        "state": row.state.value,
        "received_at": row.received_at,
        "started_at": row.started_at,
        "status_count": row.status_count,
    }
    if row.finished is not None:
        values["finished_at"], values["return_code"], values["output"] = row.finished
        values["reason"] = row.reason
    return values


def postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def ints(name: str) -> Any:
    return bindparam(name, type_=ARRAY(Integer))
