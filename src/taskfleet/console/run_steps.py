"""A job run's steps on its run page (issue 9), loaded by htmx into the page.

- A **client job**: each computer's steps as its agent reported them with the
  instance's final status (``ns.instance_steps``): step number, name, state, return
  code; the computer's output page has each step's output under its header.
- A **server job**: its step runs so far (``Run.parent_run_id``), each with its
  instances' state counts and a link to that run's page.

Any other run has no steps: the section stays empty. While the run goes on, the
section reloads itself every few seconds (computers report their steps as they end).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.console.sessions import Viewing
from taskfleet.console.web import PREFIX, render
from taskfleet.ns import instance_steps, runs, server_jobs
from taskfleet.ns.state import ns_state
from taskfleet.storage.models import Instance, Run

router = APIRouter(prefix=PREFIX + "/runs", include_in_schema=False)


async def _step_runs(session: AsyncSession, job_run: Run) -> list[dict[str, Any]]:
    """A server job's step runs in the order they started, with their state counts."""
    plan = (job_run.plan or {}).get("steps") or []
    found = (
        await session.execute(
            select(Run.id, Run.step, Run.ended_by)
            .where(Run.parent_run_id == job_run.id)
            .order_by(Run.id)
        )
    ).all()
    counts: dict[int, dict[str, int]] = {r.id: {} for r in found}
    if found:
        grouped = await session.execute(
            select(Instance.run_id, Instance.state, func.count())
            .where(Instance.run_id.in_(list(counts)))
            .group_by(Instance.run_id, Instance.state)
        )
        for run_id, state, n in grouped.all():
            counts[run_id][state] = n
    shown = []
    for r in found:
        if r.step is None:
            continue
        name = plan[r.step].get("name", "") if 0 <= r.step < len(plan) else ""
        shown.append(
            {
                "run": r.id,
                "step": r.step + 1,
                "name": name,
                "counts": counts[r.id],
                "ended_by": r.ended_by,
            }  # fmt: skip
        )
    return shown


@router.get("/{run_id}/steps")
async def run_steps(request: Request, run_id: int, user: Viewing) -> HTMLResponse:
    async with ns_state(request).session() as session:
        summary = await runs.summary(session, run_id, with_instances=False)  # 404 if none
        run = await session.get(Run, run_id)
        assert run is not None
        step_runs, by_computer = [], {}
        if server_jobs.is_job_run(run):
            step_runs = await _step_runs(session, run)
        elif run.job_id is not None:
            by_computer = await instance_steps.of_run(session, run_id)
    context = {"run": summary, "step_runs": step_runs, "by_computer": by_computer,
               "job": run.job_id is not None}  # fmt: skip
    return await render(request, "_run_steps.html", context)
