"""Retention: history older than the NS keeps it is pruned, a bounded batch at a time.

What is history, and how long it stays (``ns serve`` options, ``NSSettings``):

- **runs** (``--keep-history``, default 90 days): a run created before the cut-off
  whose instances have all ended goes with its instances, their ``status_seen``
  records and its ``run_target`` rows. A run with an instance still in progress is
  kept, however old, so nothing an agent may still report on disappears. A server
  job's run (``ns.server_jobs``) goes with its step runs, in the same transaction, once
  the job has ended and none of its steps has an instance in progress (its age is the
  job run's): a kept job run keeps all its steps, and no step outlives its job run.
- **status_seen** records older than ``--keep-history`` go too, whatever their
  instance (they exist to recognise a resent status, R8; none is resent months later).
- **audit entries** (``--keep-audit``, default 365 days): audit is the record of who
  changed what, so it is kept longer than runs.
- ``0`` keeps that history forever. Tasks, jobs, computers, collections and applied
  configuration versions are not history: they are never pruned.

Never one huge DELETE: each statement deletes at most ``BATCH`` rows chosen by id,
each batch is its own short transaction, and the duty pauses between batches, so
status ingestion and the console go on while years of runs are pruned. It runs as an
NS duty (``ns.duties``): on one replica at a time, and safe to run twice (deleting
what is already gone deletes nothing).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from taskfleet.protocol.messages import UNFINISHED
from taskfleet.storage.models import AuditEntry, Instance, Run, RunTarget, StatusSeen

log = logging.getLogger("taskfleet.ns.retention")
BATCH = 2000  # rows per DELETE
RUNS_PER_BATCH = 100
PAUSE_S = 0.05  # between batches: other transactions get the tables in between

Sessions = Callable[[], Any]  # NSState.session: an async context manager of AsyncSession


@dataclass
class Pruned:
    runs: int = 0
    instances: int = 0
    status_seen: int = 0
    audit: int = 0

    @property
    def any(self) -> bool:
        return bool(self.runs or self.instances or self.status_seen or self.audit)


async def _old_runs(session: AsyncSession, cutoff: float) -> list[int]:
    """Up to RUNS_PER_BATCH old runs that may go, with the step runs of those that are
    server job runs: a job run and its steps go together, in one transaction."""
    step, parent = aliased(Run), aliased(Run)
    in_progress = exists().where(Instance.run_id == Run.id, Instance.state.in_(UNFINISHED))
    step_in_progress = exists(
        select(step.id)
        .join(Instance, Instance.run_id == step.id)
        .where(step.parent_run_id == Run.id, Instance.state.in_(UNFINISHED))
    )
    has_steps = exists().where(step.parent_run_id == Run.id)
    # A step run goes only with its job run; one whose job run is gone already (pruned
    # before this rule) goes on its own.
    own = or_(Run.parent_run_id.is_(None), ~exists().where(parent.id == Run.parent_run_id))
    query = (
        select(Run.id)
        .where(
            Run.created_at < cutoff,
            own,
            ~in_progress,
            ~step_in_progress,
            ~and_(Run.ended_at.is_(None), has_steps),  # an open job may start another step
        )
        .order_by(Run.id)
        .limit(RUNS_PER_BATCH)
    )
    run_ids = list((await session.scalars(query)).all())
    if not run_ids:
        return []
    steps = await session.scalars(select(Run.id).where(Run.parent_run_id.in_(run_ids)))
    return run_ids + list(steps.all())


async def _prune_runs_batch(session: AsyncSession, cutoff: float, pruned: Pruned) -> bool:
    """One batch of old runs' rows; False once no old run is left."""
    run_ids = await _old_runs(session, cutoff)
    if not run_ids:
        return False
    instance_ids = list(
        (
            await session.scalars(
                select(Instance.id).where(Instance.run_id.in_(run_ids)).limit(BATCH)
            )
        ).all()
    )
    if instance_ids:
        # Instances first, a batch at a time: a run on 10,000 computers is many batches.
        result = await session.execute(
            delete(StatusSeen).where(StatusSeen.instance_id.in_(instance_ids))
        )
        pruned.status_seen += _count(result)
        result = await session.execute(delete(Instance).where(Instance.id.in_(instance_ids)))
        pruned.instances += _count(result)
        return True
    await session.execute(delete(RunTarget).where(RunTarget.run_id.in_(run_ids)))
    result = await session.execute(delete(Run).where(Run.id.in_(run_ids)))
    pruned.runs += _count(result)
    return True


async def _prune_older(session: AsyncSession, table: Any, at: Any, cutoff: float) -> int:
    """Up to BATCH rows of ``table`` whose ``at`` is before ``cutoff``."""
    ids = select(table.id).where(at < cutoff).order_by(table.id).limit(BATCH)
    found = list((await session.scalars(ids)).all())
    if not found:
        return 0
    return _count(await session.execute(delete(table).where(table.id.in_(found))))


def _count(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


async def prune(
    sessions: Sessions,
    keep_history_s: float,
    keep_audit_s: float,
    now: float | None = None,
    pause_s: float = PAUSE_S,
) -> Pruned:
    """Prune everything older than the kept ages, batch by batch; returns what went."""
    now = time.time() if now is None else now
    pruned = Pruned()
    if keep_history_s > 0:
        cutoff = now - keep_history_s
        while True:
            async with sessions() as session:
                more = await _prune_runs_batch(session, cutoff, pruned)
            if not more:
                break
            await asyncio.sleep(pause_s)
        while True:
            async with sessions() as session:
                went = await _prune_older(session, StatusSeen, StatusSeen.received_at, cutoff)
            pruned.status_seen += went
            if went < BATCH:
                break
            await asyncio.sleep(pause_s)
    if keep_audit_s > 0:
        cutoff = now - keep_audit_s
        while True:
            async with sessions() as session:
                went = await _prune_older(session, AuditEntry, AuditEntry.at, cutoff)
            pruned.audit += went
            if went < BATCH:
                break
            await asyncio.sleep(pause_s)
    if pruned.any:
        log.info(
            "retention: pruned %d runs, %d instances, %d status records, %d audit entries",
            pruned.runs,
            pruned.instances,
            pruned.status_seen,
            pruned.audit,
        )
    return pruned
