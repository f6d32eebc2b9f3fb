"""Cancel buttons on the run page: the whole run, or one computer's instance (ns.cancel).

Operators and admins only; each press is audited like the API's (``run.cancel``). The
page comes back with what was done, and its live part shows the instances end."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from taskfleet.console.sessions import Changing
from taskfleet.console.web import PREFIX, render
from taskfleet.ns import cancel, runs
from taskfleet.ns.state import ns_state
from taskfleet.ns.users import Role
from taskfleet.protocol.messages import InstanceState

router = APIRouter(prefix=PREFIX + "/runs", include_in_schema=False)


@router.post("/{run_id}/cancel")
async def cancel_run(request: Request, run_id: int, user: Changing) -> HTMLResponse:
    user.require(Role.OPERATOR)
    form = await request.form()
    computer = str(form.get("computer", "")).strip() or None
    state = ns_state(request)
    async with state.session() as session:
        done = await cancel.cancel(state, session, run_id, computer, user.name)
    whom = f"{computer}'s instance" if computer else "the run"
    notice = (
        f"Canceled {whom}: {done.withdrawn} pending withdrawn, {done.stopping} running told "
        f"to stop (they end Canceled once stopped), {done.finished} finished already."
    )
    async with state.session() as session:
        summary = await runs.summary(session, run_id)
    context = {"run": summary, "states": [s.value for s in InstanceState], "notice": notice}
    return await render(request, "run.html", context, page="runs")
