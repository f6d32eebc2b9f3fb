"""Which of a run's pending computers wait for a maintenance window, and until when.

The run page says "Waiting for window (opens …)" for them instead of a bare Pending
(ns.window_hold knows the windows); the instance's state stays Pending everywhere,
the API included.
"""

from __future__ import annotations

from fastapi import Request

from taskfleet.ns import window_hold
from taskfleet.ns.runs import RunSummary
from taskfleet.ns.state import ns_state
from taskfleet.protocol.messages import InstanceState


async def held(request: Request, run: RunSummary) -> dict[int, float]:
    """Computer id → when its first window opens, for the held instances of ``run``."""
    if run.ignore_windows:
        return {}
    pending = [i["computer_id"] for i in run.instances if i["state"] == InstanceState.PENDING]
    if not pending:
        return {}
    async with ns_state(request).session() as session:
        return await window_hold.held_until(session, pending)
