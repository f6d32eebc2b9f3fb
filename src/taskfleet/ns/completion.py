"""Completion requirements of a run (SPEC section 2): when is a run complete?

A run may set a minimum wait, a maximum wait, and a minimum count or share of its
computers done (in any final state). ``check`` decides, purely, whether and why
the run is complete:

1. every computer is done: ``all_done`` (nothing is left to wait for, so the
   minimum wait does not hold it);
2. once the minimum wait (default 0) has passed, ``min_count`` or ``min_share``
   computers are done;
3. the maximum wait has passed: ``max_wait``, however many are done.

A run without requirements is complete when every computer is done, as before.
Computers still working when a requirement ends the run carry on and report; the
run stays ended by that requirement. ``settle`` (a fleet-wide duty) records the
first requirement met on the run; a server job's next step waits for it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Text, and_, cast, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import InvalidInput
from taskfleet.ns import audit
from taskfleet.protocol.messages import UNFINISHED, InstanceState
from taskfleet.storage.models import Instance, Run

MAX_WAIT_S = 366 * 86_400.0
ALL_DONE, MIN_COUNT, MIN_SHARE, MAX_WAIT = "all_done", "min_count", "min_share", "max_wait"
BATCH = 500  # open runs read per query by settle


@dataclass(frozen=True)
class Requirements:
    min_wait_s: float | None = None
    max_wait_s: float | None = None
    min_count: int | None = None
    min_share: float | None = None  # of the run's computers, above 0 and at most 1

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> Requirements:
        """From the API's JSON object; a 400 naming the field at fault."""
        raw = dict(raw or {})
        unknown = sorted(set(raw) - {"min_wait_s", "max_wait_s", "min_count", "min_share"})
        if unknown:
            raise InvalidInput(
                f"unknown completion requirement {unknown[0]!r}; there are min_wait_s, "
                "max_wait_s, min_count and min_share",
                field=f"requirements.{unknown[0]}",
            )
        found = cls(
            _seconds(raw.get("min_wait_s"), "min_wait_s"),
            _seconds(raw.get("max_wait_s"), "max_wait_s"),
            _count(raw.get("min_count")),
            _share(raw.get("min_share")),
        )
        if found.min_count is not None and found.min_share is not None:
            raise InvalidInput(
                "give min_count or min_share, not both", field="requirements.min_share"
            )
        if (
            found.min_wait_s is not None
            and found.max_wait_s is not None
            and found.max_wait_s < found.min_wait_s
        ):
            raise InvalidInput(
                "max_wait_s is shorter than min_wait_s", field="requirements.max_wait_s"
            )
        return found

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def text(self) -> str:
        parts = []
        if self.min_wait_s is not None:
            parts.append(f"min wait {self.min_wait_s:g}s")
        if self.max_wait_s is not None:
            parts.append(f"max wait {self.max_wait_s:g}s")
        if self.min_count is not None:
            parts.append(f"min {self.min_count} computers done")
        if self.min_share is not None:
            parts.append(f"min {self.min_share:.0%} done")
        return ", ".join(parts) or "every computer done"


def _seconds(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{name} is a number of seconds", field=f"requirements.{name}")
    if not 0 <= value <= MAX_WAIT_S:
        raise InvalidInput(
            f"{name} must be between 0 and {MAX_WAIT_S:g} seconds", field=f"requirements.{name}"
        )
    return float(value)


def _count(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 2**31 - 1:
        raise InvalidInput("min_count is a whole number from 1", field="requirements.min_count")
    return value


def _share(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise InvalidInput(
            "min_share is a fraction above 0 and at most 1 (0.9 is 90 %)",
            field="requirements.min_share",
        )
    return float(value)


class RunLike(Protocol):
    """What ``check`` reads of a run (a ``Run`` row is one)."""

    @property
    def created_at(self) -> float: ...

    @property
    def requirements(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Ended:
    by: str  # all_done | min_count | min_share | max_wait
    at: float
    why: str


def check(run: RunLike, counts: Mapping[str, int], now: float) -> Ended | None:
    """Is the run complete at ``now`` with these per-state instance counts, and why?"""
    need = Requirements.parse(run.requirements)
    total = sum(counts.values())
    done = sum(n for state, n in counts.items() if InstanceState(state).terminal)
    if total and done >= total:
        return Ended(ALL_DONE, now, f"all {total} computers done")
    if now >= run.created_at + (need.min_wait_s or 0.0):
        if need.min_count is not None and done >= need.min_count:
            return Ended(MIN_COUNT, now, f"{done} of {total} computers done")
        share = need.min_share
        if share is not None and total and done >= math.ceil(share * total - 1e-9):
            return Ended(MIN_SHARE, now, f"{done} of {total} computers done ({share:.0%} needed)")
    if need.max_wait_s is not None and now >= run.created_at + need.max_wait_s:
        deadline = run.created_at + need.max_wait_s
        return Ended(MAX_WAIT, deadline, f"max wait {need.max_wait_s:g}s over, {done} done")
    return None


async def run_counts(session: AsyncSession, run_ids: list[int]) -> dict[int, dict[str, int]]:
    """Per-state instance counts of each run, in one query."""
    found: dict[int, dict[str, int]] = {run_id: {} for run_id in run_ids}
    for start in range(0, len(run_ids), 1000):
        rows = await session.execute(
            select(Instance.run_id, Instance.state, func.count())
            .where(Instance.run_id.in_(run_ids[start : start + 1000]))
            .group_by(Instance.run_id, Instance.state)
        )
        for run_id, state, count in rows.all():
            found[run_id][state] = count
    return found


def _may_be_complete() -> ColumnElement[bool]:
    """Open runs ``check`` could find complete: a run with requirements (time alone may
    end it), or one that has instances and none of them still to do (``all_done``).
    A run without requirements and with a computer still working cannot be complete,
    and in a large fleet most open runs are such runs (offline computers wait for their
    expiry), so they are left out without counting their instances."""
    has_requirements = cast(Run.requirements, Text) != "{}"  # as stored: json.dumps({})
    any_instance = exists().where(Instance.run_id == Run.id)
    to_do = exists().where(Instance.run_id == Run.id, Instance.state.in_(UNFINISHED))
    return or_(has_requirements, and_(any_instance, ~to_do))


async def settle(session: AsyncSession, now: float | None = None) -> list[int]:
    """Record the requirement that ended each open run whose requirements are now met;
    returns those runs' ids. Safe to run twice at once: a run is ended only while open.
    Runs are read BATCH at a time, by id, and only those that may be complete."""
    now = time.time() if now is None else now
    ended: list[int] = []
    after = 0
    while True:
        found = (
            await session.execute(
                select(Run.id, Run.created_at, Run.requirements)
                .where(Run.ended_at.is_(None), Run.id > after, _may_be_complete())
                .order_by(Run.id)
                .limit(BATCH)
            )
        ).all()
        counts = await run_counts(session, [run.id for run in found])
        for run in found:
            complete = check(run, counts[run.id], now)
            if complete is None:
                continue
            if await record_end(session, run.id, complete.by, complete.at, complete.why):
                ended.append(run.id)
        if len(found) < BATCH:
            return ended
        after = found[-1].id


async def record_end(session: AsyncSession, run_id: int, by: str, at: float, why: str) -> bool:
    """Record what ended the run, and audit it, if it is still open; False if it was not
    (another round or replica ended it first)."""
    result = await session.execute(
        update(Run)
        .where(Run.id == run_id, Run.ended_at.is_(None))
        .values(ended_by=by, ended_at=at)
        .execution_options(synchronize_session=False)
    )
    if not getattr(result, "rowcount", 0):
        return False
    audit.record(session, "ns", "run.complete", str(run_id), by=by, why=why)
    return True


def state_of(
    run: Run, counts: Mapping[str, int], now: float
) -> tuple[bool, str | None, float | None]:
    """(complete, ended_by, ended_at) for a run summary: what is recorded, else what
    ``check`` says now (the duty records it within a round)."""
    if run.ended_at is not None:
        return True, run.ended_by, run.ended_at
    found = check(run, counts, now)
    if found is None:
        return False, None, None
    return True, found.by, found.at
