"""A job run's steps, as a run's page shows them (issue 9).

- A **client job**: each computer's steps as its agent reported them
  (``ns.instance_steps``).
- A **server job**: its step runs so far (``ns.server_jobs.step_runs``, which the run's
  summary carries), each with its instances' state counts.

Any other run has no steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.ns import instance_steps, runs
from taskfleet.ns.instance_steps import StepResult
from taskfleet.storage.models import Instance, Run


@dataclass
class RunSteps:
    run: runs.RunSummary
    job: bool  # a run of a job (client or server), which has steps
    # A server job's step runs in the order they started, each with "counts" by state.
    step_runs: list[dict[str, Any]] = field(default_factory=list)
    # A client job's step records by computer (id, name).
    by_computer: dict[tuple[int, str], list[StepResult]] = field(default_factory=dict)


async def state_counts(session: AsyncSession, run_ids: list[int]) -> dict[int, dict[str, int]]:
    """Each run's instances counted by state (runs without instances: {})."""
    counts: dict[int, dict[str, int]] = {run_id: {} for run_id in run_ids}
    if run_ids:
        grouped = await session.execute(
            select(Instance.run_id, Instance.state, func.count())
            .where(Instance.run_id.in_(run_ids))
            .group_by(Instance.run_id, Instance.state)
        )
        for run_id, state, n in grouped.all():
            counts[run_id][state] = n
    return counts


async def of_run(session: AsyncSession, run_id: int) -> RunSteps:
    """The run's steps; NotFound when there is no such run."""
    summary = await runs.summary(session, run_id, with_instances=False)
    job_id = await session.scalar(select(Run.job_id).where(Run.id == run_id))
    shown = RunSteps(summary, job=job_id is not None)
    if summary.steps is not None:  # a server job
        counts = await state_counts(session, [s["run"] for s in summary.steps])
        shown.step_runs = [{**s, "counts": counts[s["run"]]} for s in summary.steps]
    elif job_id is not None:
        shown.by_computer = await instance_steps.of_run(session, run_id)
    return shown
