"""Agents send their inventory to the NS itself (``ns.inventory``).

POST /api/agent/inventory   ``InventoryReport``; 204. Sent at enrolment, every
                            inventory interval, and by an Inventory task: about one
                            request per computer a day by default, so it does not go
                            through the task servers.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from taskfleet.ns import inventory
from taskfleet.ns.auth import AgentComputer
from taskfleet.ns.openapi import errors
from taskfleet.ns.state import ns_state
from taskfleet.protocol.messages import InventoryReport

router = APIRouter(prefix="/api/agent", tags=["agent"])


@router.post("/inventory", status_code=204, responses=errors(403))
async def report_inventory(
    request: Request, computer_id: AgentComputer, body: InventoryReport
) -> None:
    async with ns_state(request).session() as session:
        await inventory.store(session, computer_id, body)
