"""A client job's step records on the NS: checked as they arrive, stored, read back.

The agent reports one record per step with the instance's final status
(``protocol.step_records``, ``StatusEvent.steps``). ``ns.status.ingest`` hands over
the records of the events that end an instance; ``store`` checks each record on its
own and stores those that pass, so a bad record (a NUL in a name, an over-long path,
too many records) is refused and logged, and never costs the instance its final status,
which the same event carries. Output is escaped and cut, never refused (as script
output is: ``protocol.fields``).

The rows go with their instance (a foreign key with ON DELETE CASCADE; retention).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.protocol import step_records
from taskfleet.storage.models import Computer, Instance, InstanceStep

log = logging.getLogger("taskfleet.ns.status")
MAX_SHOWN = 2000  # step records on one run's page


@dataclass
class StepResult:
    """One step as an instance view shows it (``run-output``, the console's run page)."""

    path: str
    name: str
    state: str
    return_code: int | None
    output: str


async def store(session: AsyncSession, reported: list[tuple[int, Any]]) -> None:
    """Store the step records of instances that just ended: ``(instance id, steps)``."""
    values: list[dict[str, Any]] = []
    for instance_id, raw in reported:
        found = step_records.checked(raw)
        if found.refused:
            log.warning(
                "instance %s: %d step record problem(s) refused, %d records kept: %s",
                instance_id,
                len(found.refused),
                len(found.records),
                "; ".join(found.refused[:5]),
            )
        values += [
            {"instance_id": instance_id, "seq": seq, **r}
            for seq, r in enumerate(found.records, start=1)
        ]
    if values:
        await session.execute(insert(InstanceStep), values)


async def of_instance(session: AsyncSession, instance_id: int) -> list[StepResult]:
    rows = await session.scalars(
        select(InstanceStep)
        .where(InstanceStep.instance_id == instance_id)
        .order_by(InstanceStep.seq)
    )
    return [_result(r) for r in rows]


async def of_run(
    session: AsyncSession, run_id: int, limit: int = MAX_SHOWN
) -> dict[tuple[int, str], list[StepResult]]:
    """Computers' step records in one run, by computer (id, name; those with any),
    without their outputs (a run may have thousands of computers: each computer's
    output page has them), at most ``limit`` records in all."""
    rows = await session.execute(
        select(
            Computer.id,
            Computer.name,
            InstanceStep.path,
            InstanceStep.name.label("step"),
            InstanceStep.state,
            InstanceStep.return_code,
        )
        .join(Instance, Instance.id == InstanceStep.instance_id)
        .join(Computer, Computer.id == Instance.computer_id)
        .where(Instance.run_id == run_id)
        .order_by(Computer.name, InstanceStep.seq)
        .limit(limit)
    )
    found: dict[tuple[int, str], list[StepResult]] = {}
    for r in rows.all():
        step = StepResult(r.path, r.step, r.state, r.return_code, "")
        found.setdefault((r.id, r.name), []).append(step)
    return found


def _result(row: InstanceStep) -> StepResult:
    return StepResult(row.path, row.name, row.state, row.return_code, row.output)
