"""Who may join and act: enrolment tokens, an admin's identity reset, refusals reported.

POST /api/tokens                  create a token (the secret is shown once)
GET  /api/tokens                  every token: label, kind, uses left, expiry, state
POST /api/tokens/{id}/revoke      refuse every enrolment with it from now on
POST /api/computers/{key}/reset   drop a computer's credential; its next enrolment
                                  is accepted once (ns.identity)
POST /api/ts/refusals             a task server reports what it refused its agents,
                                  for the audit log
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from taskfleet.ns import identity, tokens
from taskfleet.ns.auth import Administrator, TaskServerApproved
from taskfleet.ns.identity_replies import ComputerReset, TokenCreated, TokenView
from taskfleet.ns.openapi import errors
from taskfleet.ns.state import ns_state
from taskfleet.protocol.fields import ShortText, text
from taskfleet.protocol.messages import Refusals
from taskfleet.storage.models import MAX_ID

router = APIRouter(prefix="/api", tags=["identity"])
MAX_REFUSALS = 100


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Annotated[str, text(16)] = Field(description="agent or taskserver")
    label: ShortText = Field(default="", description="what it is for")
    uses: Annotated[StrictInt, Field(ge=1, le=tokens.MAX_USES)] | None = Field(
        default=None, description="enrolments it allows; omitted: unlimited"
    )
    ttl_s: float | None = Field(
        default=None,
        ge=0,
        le=tokens.MAX_TTL_S,
        allow_inf_nan=False,
        description="seconds until it expires; omitted: 24 hours; 0: never (audited)",
    )


@router.post("/tokens", responses=errors(400))
async def create_token(request: Request, body: TokenRequest, admin: Administrator) -> TokenCreated:
    """Create an enrolment token for one kind of node; its secret is in this reply only."""
    async with ns_state(request).session() as session:
        token, secret = await tokens.create(
            session, body.kind, body.label, body.uses, body.ttl_s, admin.name
        )
        never = token.expires_at is None
        out = TokenCreated(**tokens.view(token, time.time()), token=secret)
    if never:
        out.warning = (
            "this token never expires: whoever holds it can enrol until it is revoked "
            f"('taskfleet token revoke {token.id}')"
        )
    return out


@router.get("/tokens")
async def list_tokens(request: Request, _: Administrator) -> list[TokenView]:
    """Every enrolment token with its state; never the secret (only its hash is kept)."""
    async with ns_state(request).session() as session:
        return [TokenView(**shown) for shown in await tokens.list_all(session)]


@router.post("/tokens/{key}/revoke", responses=errors(400, 404, 409))
async def revoke_token(request: Request, key: ShortText, admin: Administrator) -> TokenView:
    """Revoke a token by id: every enrolment with it is refused from now on (audited)."""
    async with ns_state(request).session() as session:
        token = await tokens.revoke(session, key, admin.name)
        return TokenView(**tokens.view(token, time.time()))


@router.post("/computers/{key:path}/reset", responses=errors(404, 409))
async def reset_computer(request: Request, key: ShortText, admin: Administrator) -> ComputerReset:
    """Drop a computer's credential (its agent is refused from now on); the next
    enrolment claiming its hardware id is accepted once. A task server's computer: its
    task server must register again, and is pending until approved."""
    return await identity.reset_computer(ns_state(request), key, admin.name)


@router.post("/ts/refusals", include_in_schema=False)
async def refusals(request: Request, ts_id: TaskServerApproved, body: Refusals) -> dict[str, int]:
    """What a task server refused its own agents (another computer's id in a request),
    for the audit log. Only about computers assigned to it; at most 100 a call."""
    items = [r for r in body.refusals[:MAX_REFUSALS] if 0 < r.computer_id <= MAX_ID]
    async with ns_state(request).session() as session:
        return {"recorded": await identity.record_refusals(session, ts_id, items)}
