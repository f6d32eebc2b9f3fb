"""What agents ask the NS itself: enrolment and which task server to use (R3, R4).

Both go in batches (``ns.agent_batches``): after a power cut thousands of agents
ask within seconds, and one transaction for many is what keeps up with them.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from taskfleet.ns import computers
from taskfleet.ns.agent_batches import Ask, agent_batches
from taskfleet.ns.auth import agent_credential
from taskfleet.ns.enrolment import EnrolRequest
from taskfleet.ns.identity import presented
from taskfleet.ns.metrics import ns_metrics
from taskfleet.protocol.messages import Assignment, AssignmentRequest, Enrolled, Enrolment

router = APIRouter(prefix="/api/agent", tags=["agent"])


@router.post("/enrol", response_model=Enrolled)
async def enrol(request: Request, body: Enrolment) -> Enrolled:
    """Enrol with a token. Enrolling a computer the NS knows (its hardware id) needs its
    current credential in ``Authorization``, or an admin's 'computer reset' (409 else)."""
    enrol_request = EnrolRequest(body, presented(request))
    credential = await agent_batches(request).enrolments.submit(enrol_request)
    ns_metrics(request).enrolments.inc()
    return Enrolled(computer_id=credential.principal, credential=str(credential))


@router.post("/assignment", response_model=Assignment)
async def assignment(request: Request, body: AssignmentRequest) -> Assignment:
    credential = agent_credential(request)
    computers.check_facts(body.facts)
    ask = Ask(
        credential.principal,
        credential.secret,
        body.facts,
        body.failed_task_server,
        body.reason[:500],
    )
    assigned = await agent_batches(request).assignments.submit(ask)
    ns_metrics(request).assigned(assigned, failover=body.failed_task_server is not None)
    return assigned
