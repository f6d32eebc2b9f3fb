"""A job run's steps on its run page (issue 9), loaded by htmx into the page.

- A **client job**: each computer's steps as its agent reported them with the
  instance's final status (``ns.instance_steps``): step number, name, state, return
  code; the computer's output page has each step's output under its header.
- A **server job**: its step runs so far (``Run.parent_run_id``), each with its
  instances' state counts and a link to that run's page.

The NS reads them (``ns.run_steps``). Any other run has no steps: the section stays
empty. While the run goes on, the section reloads itself every few seconds (computers
report their steps as they end).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from taskfleet.console.sessions import Viewing
from taskfleet.console.web import PREFIX, render
from taskfleet.ns import run_steps as steps
from taskfleet.ns.state import ns_state

router = APIRouter(prefix=PREFIX + "/runs", include_in_schema=False)


@router.get("/{run_id}/steps")
async def run_steps(request: Request, run_id: int, user: Viewing) -> HTMLResponse:
    async with ns_state(request).session() as session:
        shown = await steps.of_run(session, run_id)  # 404 if none
    context = {"run": shown.run, "step_runs": shown.step_runs, "by_computer": shown.by_computer,
               "job": shown.job}  # fmt: skip
    return await render(request, "_run_steps.html", context)
