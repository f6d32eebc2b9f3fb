"""Nothing stuck, ever: runs expire, instances have deadlines (issue 9).

Two set-based UPDATEs, run by one duty on one replica at a time (``ns.duties``);
each is also safe if two replicas overlap (the WHERE clause re-checks the state
under the row lock, so an instance ends once, and a status batch that locked it
first wins):

* **Expiry** — a run's ``expires_at`` (default 7 days after it was created, settable
  per run): its instances still ``Pending`` then (no agent received them: the
  computer was offline, or outside its maintenance windows) end ``Expired``. Until
  then an offline computer's instance simply waits for it. One a task server held
  already gets a stop notice (``cancel_at``, ns.cancel), so the task server drops
  it and never hands it out.
* **Deadline** — an instance an agent received (``Received``/``Running``) ends
  ``TimedOut`` once its task's timeout plus ``grace`` has passed since it was
  received: the agent died, its status was lost, or it never came back. A cancel
  the agent did not confirm ends ``Canceled`` ``grace`` after it was asked.

Both read ``ix_instance_state_run`` (open states only, so 100,000 finished
instances cost nothing) and write ``reason``: why it ended so, shown with the
instance in run-status, the API and the console.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import InvalidInput
from taskfleet.protocol.messages import InstanceState
from taskfleet.storage.models import Computer, Instance, Run, Task

DEFAULT_EXPIRY_S = 7 * 24 * 3600.0
MAX_EXPIRY_S = 366 * 24 * 3600.0
EXPIRED_REASON = "expired: no agent received it before the run's expiry"
JOB_TIMEOUT_S = 24 * 3600.0  # a run with neither a task nor a plan's timeout
HELD = (InstanceState.RECEIVED.value, InstanceState.RUNNING.value)
OPEN = (InstanceState.PENDING.value, *HELD)


def expires_at(
    now: float, expires_in_s: float | None = None, at: float | None = None, field_: str = ""
) -> float:
    """A run's expiry from ``expires_in_s`` or an absolute ``at`` (one, not both);
    InvalidInput names the field when it is in the past or too far ahead."""
    if expires_in_s is not None and at is not None:
        raise InvalidInput("give expires_in_s or expires_at, not both", field="expires_at")
    if at is not None:
        name, value = field_ or "expires_at", at
    else:
        name = field_ or "expires_in_s"
        value = now + (DEFAULT_EXPIRY_S if expires_in_s is None else expires_in_s)
    if value != value or value <= now:  # also NaN
        raise InvalidInput(
            f"{name}: the expiry {_when(value)} is not in the future; give a later time "
            "or a positive duration such as 2h",
            field=name,
        )
    if value - now > MAX_EXPIRY_S:
        raise InvalidInput(f"{name}: an expiry at most 366 days ahead", field=name)
    return value


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def duration(text: str, field_: str) -> float:
    """``90m``, ``2h``, ``3d``, ``1w`` or seconds, as the console's run form takes an
    expiry (the CLI reads it the same way: cli.when)."""
    found = _DURATION.match(text)
    if found is None:
        raise InvalidInput(
            f"{field_}: {text!r} is not a duration; give one like 90m, 2h, 3d or 1w", field=field_
        )
    return float(found.group(1)) * _UNITS[found.group(2).lower()]


def _when(value: float) -> str:
    try:
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return repr(value)


@dataclass
class Ended:
    """What one round ended: the runs to wake, and the computers whose task server
    must be told to drop or stop an instance (ns.cancel)."""

    expired: int = 0
    timed_out: int = 0
    canceled: int = 0
    runs: set[int] = field(default_factory=set)
    notify: list[tuple[int, int | None]] = field(default_factory=list)


async def expire(session: AsyncSession, now: float) -> Ended:
    """Instances of expired runs that no agent received: ``Expired``."""
    ended = Ended()
    # A run made without an expiry (before migration 0010 filled it in, or a server job's
    # step run) expires the default time after it was created.
    expires = func.coalesce(Run.expires_at, Run.created_at + DEFAULT_EXPIRY_S)
    expired_runs = select(Run.id).where(expires <= now)
    result = await session.execute(
        update(Instance)
        .where(Instance.state == InstanceState.PENDING.value, Instance.run_id.in_(expired_runs))
        .values(
            state=InstanceState.EXPIRED.value,
            finished_at=now,
            reason=EXPIRED_REASON,
            # A task server may hold it: tell it to drop it (ns.cancel).
            cancel_at=case((Instance.delivered_at.is_not(None), now), else_=None),
        )
        .returning(Instance.run_id, Instance.computer_id, Instance.delivered_at)
        .execution_options(synchronize_session=False)
    )
    held: set[int] = set()
    for run_id, computer_id, delivered_at in result.all():
        ended.expired += 1
        ended.runs.add(run_id)
        if delivered_at is not None:
            held.add(computer_id)
    ended.notify = await task_servers_of(session, held)
    return ended


async def end_overdue(session: AsyncSession, now: float, grace_s: float) -> Ended:
    """Received or running instances past their deadline (task timeout + ``grace_s``
    after the agent received them), or canceled ``grace_s`` ago: ended by the NS."""
    ended = Ended()
    since = func.coalesce(Instance.received_at, Instance.started_at, Instance.delivered_at, now)
    # A task's timeout, or a client job's (its plan, ns.job_plans).
    timeout = func.coalesce(Task.timeout_s, Run.plan["timeout_s"].as_float(), JOB_TIMEOUT_S)
    overdue = (
        select(Instance.id)
        .join(Run, Run.id == Instance.run_id)
        .outerjoin(Task, Task.id == Run.task_id)  # none for a job's run
        .where(
            Instance.state.in_(HELD),
            or_(
                since + timeout + grace_s < now,
                and_(Instance.cancel_at.is_not(None), Instance.cancel_at + grace_s < now),
            ),
        )
    )
    canceled = Instance.cancel_at.is_not(None)
    result = await session.execute(
        update(Instance)
        # The state again here: re-checked under the row lock (a status may have won).
        .where(Instance.state.in_(HELD), Instance.id.in_(overdue))
        .values(
            state=case(
                (canceled, InstanceState.CANCELED.value), else_=InstanceState.TIMED_OUT.value
            ),
            finished_at=now,
            reason=case(
                (
                    canceled,
                    func.coalesce(Instance.reason, "canceled")
                    + "; the agent did not confirm it stopped",
                ),
                else_="timed out: no result from the agent within the task's timeout "
                f"and {grace_s:g}s of grace (the agent stopped, or its status was lost)",
            ),
        )
        .returning(Instance.run_id, Instance.state)
        .execution_options(synchronize_session=False)
    )
    for run_id, state in result.all():
        ended.runs.add(run_id)
        if state == InstanceState.CANCELED.value:
            ended.canceled += 1
        else:
            ended.timed_out += 1
    return ended


async def task_servers_of(
    session: AsyncSession, computer_ids: set[int]
) -> list[tuple[int, int | None]]:
    """``(computer, its task server)`` pairs, as ``Hub.notify`` takes them."""
    ids = sorted(computer_ids)
    pairs: list[tuple[int, int | None]] = []
    for start in range(0, len(ids), 1000):
        rows = await session.execute(
            select(Computer.id, Computer.task_server_id).where(
                Computer.id.in_(ids[start : start + 1000])
            )
        )
        pairs.extend((r.id, r.task_server_id) for r in rows.all())
    return pairs


async def settle_notices(session: AsyncSession) -> None:
    """Stop notices no longer owed (sent, and the instance has ended) leave the
    ``cancel_at`` index, so what the task servers' queries read stays small (ns.cancel)."""
    await session.execute(
        update(Instance)
        .where(
            Instance.cancel_at.is_not(None),
            Instance.cancel_sent_at.is_not(None),
            Instance.state.not_in(OPEN),
        )
        .values(cancel_at=None)
        .execution_options(synchronize_session=False)
    )


async def sweep(session: AsyncSession, grace_s: float, now: float | None = None) -> Ended:
    """One round: expiry, then deadlines. The caller commits, then wakes and notifies."""
    now = time.time() if now is None else now
    await settle_notices(session)
    ended = await expire(session, now)
    overdue = await end_overdue(session, now, grace_s)
    ended.timed_out, ended.canceled = overdue.timed_out, overdue.canceled
    ended.runs |= overdue.runs
    return ended
