"""What agents ask the NS itself: enrolment and which task server to use (R3, R4).

Both go in batches (``ns.agent_batches``): after a power cut thousands of agents
ask within seconds, and one transaction for many is what keeps up with them.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from taskfleet.errors import InvalidInput
from taskfleet.ns import certificates, computers
from taskfleet.ns.agent_batches import Ask, agent_batches
from taskfleet.ns.auth import agent_credential
from taskfleet.ns.enrolment import EnrolRequest
from taskfleet.ns.identity import presented
from taskfleet.ns.metrics import ns_metrics
from taskfleet.ns.openapi import errors
from taskfleet.ns.state import ns_state
from taskfleet.protocol.messages import Assignment, AssignmentRequest, Enrolled, Enrolment

router = APIRouter(prefix="/api/agent", tags=["agent"])


@router.post("/enrol", response_model=Enrolled, responses=errors(401, 403, 409))
async def enrol(request: Request, body: Enrolment) -> Enrolled:
    """Enrol with a token. Enrolling a computer the NS knows (its hardware id) needs its
    current credential in ``Authorization``, or an admin's 'computer reset' (409 else)."""
    state = ns_state(request)
    key = ""
    if state.authority is not None:
        if not body.csr:
            raise InvalidInput(
                "csr is required: this NS issues every agent a certificate at enrolment "
                "(an agent older than the CA must be upgraded)",
                field="csr",
            )
        key = certificates.csr_key_id(body.csr)  # a bad request fails before the token
    enrol_request = EnrolRequest(body, presented(request, key))
    # The certificate is signed in the enrolment batch's own transaction.
    enrolled = await agent_batches(request).enrolments.submit(enrol_request)
    ns_metrics(request).enrolments.inc()
    return enrolled


@router.post("/assignment", response_model=Assignment, responses=errors(401, 403))
async def assignment(request: Request, body: AssignmentRequest) -> Assignment:
    credential = await agent_credential(request)
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
