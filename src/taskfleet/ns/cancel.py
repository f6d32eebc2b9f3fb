"""Cancel a run, or one computer's instance of it (issue 9; docs/work-model.md, "Cancel").

* ``Pending`` instances are withdrawn: they end ``Canceled`` at once. One a task
  server holds already (``delivered_at`` set) also gets a stop notice, so the task
  server drops it from its cache and never hands it out.
* ``Received``/``Running`` ones get a stop notice: ``cancel_at`` is set, the task
  server is bumped (``Hub.notify``, the same path as new work), fetches the notice
  with its next work batch (``WorkBatch.cancel``) and tickles the agent, whose
  channel reply carries ``cancel``: the agent kills the script's whole process tree
  and reports ``Canceled`` at once. If it never confirms, the NS ends the instance
  ``Canceled`` after the deadline grace (ns.expiry).
* Finished instances are left as they are.

The stop notice (``cancel_at``/``cancel_sent_at``) is handed to the task server
once for a withdrawn instance, and again every ``redeliver_after_s`` while one an
agent holds has not ended (a task server that restarted lost it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import NotFound
from taskfleet.ns import audit, computers, expiry, job_plans
from taskfleet.ns.state import NSState, after_commit
from taskfleet.protocol.messages import InstanceState, WorkRef
from taskfleet.storage.models import MAX_ID, Computer, Instance, Run

PENDING = InstanceState.PENDING.value


@dataclass
class Canceled:
    run_id: int
    withdrawn: int  # pending instances, ended Canceled now
    stopping: int  # instances agents hold, told to stop
    finished: int  # already over, left as they were


async def cancel(
    state: NSState, session: AsyncSession, run_id: int, computer: str | None, actor: str
) -> Canceled:
    """Cancel run ``run_id``, or only ``computer``'s instance of it (a name or id).

    A server job's run has its computers in its current step's run: that is canceled,
    and the job ends ``job_canceled`` (when the whole run is canceled)."""
    run = await session.get(Run, run_id) if 0 < run_id <= MAX_ID else None
    if run is None:
        raise NotFound(f"no run {run_id}; run numbers are what 'taskfleet run' printed")
    job_run_id = None
    if job_plans.is_job_run(run):
        job_run_id = run_id
        if computer is None:
            await session.execute(
                update(Run)
                .where(Run.id == run_id, Run.ended_at.is_(None))
                .values(ended_by=job_plans.JOB_CANCELED, ended_at=time.time())
                .execution_options(synchronize_session=False)
            )
        step = await job_plans.current_step(session, run)
        run_id = step.id if step is not None else run_id
    scope: list[Any] = [Instance.run_id == run_id]
    target = ""
    if computer is not None:
        found = await computers.find(session, computer)
        target = found.name
        scope.append(Instance.computer_id == found.id)
        if await session.scalar(select(Instance.id).where(*scope)) is None:
            raise NotFound(f"run {run_id} has no instance on computer {found.name!r}")
    now = time.time()
    reason = f"canceled by {actor}"[:500]
    withdrawn = await session.execute(
        update(Instance)
        .where(*scope, Instance.state == PENDING)
        .values(
            state=InstanceState.CANCELED.value,
            finished_at=now,
            reason=reason,
            cancel_at=case((Instance.delivered_at.is_not(None), now), else_=None),
        )
        .returning(Instance.computer_id, Instance.delivered_at)
        .execution_options(synchronize_session=False)
    )
    held = set()
    pending = 0
    for computer_id, delivered_at in withdrawn.all():
        pending += 1
        if delivered_at is not None:
            held.add(computer_id)
    stopping = await session.execute(
        update(Instance)
        .where(*scope, Instance.state.in_(expiry.HELD), Instance.cancel_at.is_(None))
        .values(cancel_at=now, cancel_sent_at=None, reason=reason)
        .returning(Instance.computer_id)
        .execution_options(synchronize_session=False)
    )
    running = set(stopping.scalars().all())
    total = await session.scalar(select(func.count()).select_from(Instance).where(*scope))
    finished = (total or 0) - pending - len(running)
    audit.record(
        session,
        actor,
        "run.cancel",
        target or f"run {run_id}",
        run=run_id,
        computer=target or None,
        withdrawn=pending,
        stopping=len(running),
    )
    notify = await expiry.task_servers_of(session, held | running)

    async def tell() -> None:
        await state.hub.notify(notify)
        state.hub.runs_changed([run_id] if job_run_id is None else [run_id, job_run_id])

    after_commit(session, tell)
    return Canceled(job_run_id or run_id, pending, len(running), max(0, finished))


def _owed(now: float, redeliver_after_s: float) -> Any:
    """Stop notices owed: never sent, or sent a while ago for an instance still held."""
    return and_(
        Instance.cancel_at.is_not(None),
        or_(
            Instance.cancel_sent_at.is_(None),
            and_(
                Instance.state.in_(expiry.HELD),
                Instance.cancel_sent_at < now - redeliver_after_s,
            ),
        ),
    )


async def notices_waiting(
    session: AsyncSession, task_server_id: int, redeliver_after_s: float
) -> bool:
    query = (
        select(Instance.id)
        .join(Computer, Computer.id == Instance.computer_id)
        .where(Computer.task_server_id == task_server_id, _owed(time.time(), redeliver_after_s))
        .limit(1)
    )
    return (await session.scalar(query)) is not None


async def take_notices(
    session: AsyncSession,
    redeliver_after_s: float,
    *,
    task_server_id: int | None = None,
    computer_id: int | None = None,
    limit: int = 5000,
) -> list[WorkRef]:
    """Stop notices for a task server's computers (or one computer the NS serves),
    marked sent."""
    now = time.time()
    query = select(Instance.id, Instance.computer_id, Instance.run_id).where(
        _owed(now, redeliver_after_s)
    )
    if computer_id is not None:
        query = query.where(Instance.computer_id == computer_id)
    else:
        query = query.join(Computer, Computer.id == Instance.computer_id).where(
            Computer.task_server_id == task_server_id
        )
    rows = (await session.execute(query.order_by(Instance.id).limit(limit))).all()
    ids = [r.id for r in rows]
    for start in range(0, len(ids), 1000):
        await session.execute(
            update(Instance)
            .where(Instance.id.in_(ids[start : start + 1000]))
            .values(cancel_sent_at=now)
            .execution_options(synchronize_session=False)
        )
    return [WorkRef(r.computer_id, r.id, r.run_id) for r in rows]
