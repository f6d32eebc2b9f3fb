"""What agents ask the NS itself: enrolment and which task server to use (R3, R4)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from taskfleet.ns import assigner, audit, computers
from taskfleet.ns.auth import AgentComputer
from taskfleet.ns.metrics import ns_metrics
from taskfleet.ns.state import ns_state
from taskfleet.protocol.messages import Assignment, AssignmentRequest, Enrolled, Enrolment
from taskfleet.storage.models import Computer

router = APIRouter(prefix="/api/agent", tags=["agent"])


@router.post("/enrol", response_model=Enrolled)
async def enrol(request: Request, body: Enrolment) -> Enrolled:
    async with ns_state(request).session() as session:
        credential = await computers.enrol(session, body.token, body.facts)
        audit.record(session, f"agent:{body.facts.name}", "computer.enrol", body.facts.name)
    ns_metrics(request).enrolments.inc()
    return Enrolled(computer_id=credential.principal, credential=str(credential))


@router.post("/assignment", response_model=Assignment)
async def assignment(
    request: Request, computer_id: AgentComputer, body: AssignmentRequest
) -> Assignment:
    state = ns_state(request)
    async with state.session() as session:
        computer = await session.get(Computer, computer_id)
        assert computer is not None
        computers.check_facts(body.facts)
        if body.facts.hardware_id == computer.hardware_id:
            computers.apply_facts(computer, body.facts)
        assigned = await assigner.assign(
            state, session, computer, body.failed_task_server, body.reason[:500]
        )
    ns_metrics(request).assigned(assigned, failover=body.failed_task_server is not None)
    return assigned
