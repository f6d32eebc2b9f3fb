"""Admin API for a run's life after it started: cancel (ns.cancel).

POST /api/runs/{run_id}/cancel      body ``CancelRequest``: the whole run, or one
                                    computer's instance; audited (``run.cancel``)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated

from fastapi import APIRouter, Path, Request

from taskfleet.ns import cancel
from taskfleet.ns.auth import Operator
from taskfleet.ns.openapi import errors
from taskfleet.ns.state import ns_state
from taskfleet.protocol.fields import Name
from taskfleet.storage.models import MAX_ID

router = APIRouter(prefix="/api", tags=["work"])


@dataclass
class CancelRequest:
    # A computer's name (or ``computer:ID``): cancel only its instance. None: the run.
    computer: Name | None = None


@dataclass
class CancelView:
    run_id: int
    withdrawn: int  # pending instances, ended Canceled now
    stopping: int  # instances agents hold, told to stop (Canceled once they confirm)
    finished: int  # already over, left as they were


@router.post("/runs/{run_id}/cancel", responses=errors(404))
async def cancel_run(
    request: Request,
    run_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    operator: Operator,
    body: CancelRequest | None = None,
) -> CancelView:
    """Cancel a run, or one computer's instance of it: pending instances are withdrawn,
    running ones stopped with their whole process tree (docs/work-model.md, "Cancel")."""
    state = ns_state(request)
    computer = body.computer if body is not None else None
    async with state.session() as session:
        done = await cancel.cancel(state, session, run_id, computer, operator.name)
    return CancelView(**asdict(done))
