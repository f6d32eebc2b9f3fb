"""The fleet as the database has it, for ``/metrics``: one snapshot, taken at scrape time.

A snapshot is a handful of aggregate queries: instances by state (one GROUP BY), runs in
progress, computers by the R3 step that assigned them, task servers by availability (R2)
and their capacity figures (the ones the R7 advice reads, ``advice.task_server_capacities``).

State: ``latest`` is the last snapshot, reused until it is ``MIN_AGE_S`` old, or longer
when it was slow to take (``COST_FACTOR`` times what it took): however often and however
many scrapers ask, the queries keep the database busy for at most about 1/COST_FACTOR of
the time. One refresh runs at a time; scrapes that arrive meanwhile get its result. If
the database cannot answer, the previous snapshot stays (its age is exported) and the
scrape still answers the process's own figures.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from sqlalchemy import distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.ns import registry
from taskfleet.ns.advice import TaskServerCapacity, task_server_capacities
from taskfleet.ns.state import NSState
from taskfleet.protocol.messages import UNFINISHED, Approval, InstanceState
from taskfleet.storage.models import Computer, Instance, Run, TaskServer

log = logging.getLogger("taskfleet.ns.metrics")
MIN_AGE_S = 5.0
COST_FACTOR = 20.0
UNASSIGNED = "none"
AVAILABILITY = ("available", "pending", "revoked", "disabled", "stale")


@dataclass
class Snapshot:
    instances: dict[str, int]  # by state, every state present
    runs_in_progress: int  # runs with an instance not finished yet
    runs: int
    computers: dict[str, int]  # by assignment step, ``UNASSIGNED`` for none yet
    task_servers: dict[str, str]  # name -> availability, one of AVAILABILITY
    capacities: list[TaskServerCapacity] = field(default_factory=list)
    taken_at: float = 0.0  # time.time()
    seconds: float = 0.0  # how long the queries took


def availability(ts: TaskServer, now: float) -> str:
    available, _ = registry.availability(ts, now)
    if available:
        return "available"
    if ts.approval != Approval.APPROVED:
        return ts.approval if ts.approval in AVAILABILITY else "pending"
    return "disabled" if not ts.enabled else "stale"  # stale: also no heartbeat yet


async def take(session: AsyncSession) -> Snapshot:
    by_state = dict.fromkeys((s.value for s in InstanceState), 0)
    rows = await session.execute(select(Instance.state, func.count()).group_by(Instance.state))
    for state, count in rows.all():
        by_state[state] = count
    in_progress = await session.scalar(
        select(func.count(distinct(Instance.run_id))).where(Instance.state.in_(UNFINISHED))
    )
    runs = await session.scalar(select(func.count()).select_from(Run))
    steps = await session.execute(
        select(Computer.assign_step, func.count()).group_by(Computer.assign_step)
    )
    now = time.time()
    servers = await session.scalars(select(TaskServer).order_by(TaskServer.id))
    return Snapshot(
        instances=by_state,
        runs_in_progress=in_progress or 0,
        runs=runs or 0,
        computers={step or UNASSIGNED: count for step, count in steps.all()},
        task_servers={ts.name: availability(ts, now) for ts in servers},
        capacities=await task_server_capacities(session),
        taken_at=now,
    )


class FleetFigures:
    def __init__(self) -> None:
        self.latest: Snapshot | None = None
        self.failures = 0
        self._lock = asyncio.Lock()
        self._fresh_until = 0.0  # time.monotonic()

    async def refresh(self, state: NSState) -> Snapshot | None:
        async with self._lock:  # one refresh at a time; the others wait and reuse it
            if time.monotonic() < self._fresh_until:
                return self.latest
            started = time.monotonic()
            try:
                async with state.session() as session:
                    snapshot = await take(session)
            except Exception as exc:  # the database is away: keep serving the rest
                self.failures += 1
                log.warning("fleet figures for /metrics not refreshed: %s", exc)
                self._fresh_until = time.monotonic() + MIN_AGE_S
                return self.latest
            snapshot.seconds = time.monotonic() - started
            self.latest = snapshot
            self._fresh_until = time.monotonic() + max(MIN_AGE_S, COST_FACTOR * snapshot.seconds)
            return snapshot
