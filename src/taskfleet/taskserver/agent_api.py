"""Endpoints agents call on their task server (and on the NS in its fallback role).

GET  /agent/poll             work waiting for me, and my current settings (R5)
GET  /agent/channel?wait=S   notification channel: a long poll that returns
                             at once when tickled (R6)
POST /agent/status           a batch of status events (R8)
GET  /hello                  bare endpoint, the poll benchmark's baseline
"""

from __future__ import annotations

import functools
import json
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse, Response

from taskfleet.errors import InvalidInput, Unauthenticated
from taskfleet.protocol.messages import (
    AgentSettings,
    ChannelReply,
    PollReply,
    StatusAck,
    StatusBatch,
    to_json,
)
from taskfleet.protocol.transport import parse_credential
from taskfleet.taskserver.source import WorkSource

MAX_WAIT_S = 300.0
MAX_EVENTS_PER_BATCH = 1000


def source_of(request: Request) -> WorkSource:
    source: WorkSource = request.app.state.work_source
    return source


async def agent_id(request: Request) -> int:
    header = request.headers.get("authorization", "")
    credential = parse_credential(header) if header else None
    if credential is None or credential.kind != "agent":
        raise Unauthenticated("agent credential missing or malformed; enrol the agent again")
    request.state.settings = await source_of(request).authenticate(
        credential.principal, credential.secret
    )
    return credential.principal


AgentId = Annotated[int, Depends(agent_id)]
router = APIRouter(tags=["agent"])


@router.get("/hello", include_in_schema=False)
async def hello() -> PlainTextResponse:
    return PlainTextResponse("hello")


@router.get("/agent/poll", response_model=PollReply)
async def poll(request: Request) -> Response | PollReply:
    # The hot path, called by every agent every Task Request Interval. It takes the
    # request alone (no dependency injection) and answers "nothing new" from memory
    # with a body encoded once per settings value: bench/poll.py measures it.
    computer_id = await agent_id(request)
    source = source_of(request)
    settings: AgentSettings = request.state.settings
    if not source.has_work(computer_id):
        body = _nothing_new(settings.task_request_interval_s, settings.send_status_interval_s)
        return Response(body, media_type="application/json")
    return PollReply(work=await source.fetch_work(computer_id), settings=settings)


@functools.lru_cache(maxsize=256)
def _nothing_new(task_request_interval_s: float, send_status_interval_s: float) -> bytes:
    settings = AgentSettings(task_request_interval_s, send_status_interval_s)
    return json.dumps(to_json(PollReply(work=[], settings=settings))).encode()


@router.get("/agent/channel", response_model=ChannelReply)
async def channel(
    request: Request,
    computer_id: AgentId,
    wait: Annotated[float, Query(gt=0, le=MAX_WAIT_S)] = 50.0,
) -> ChannelReply:
    source = source_of(request)
    if source.has_work(computer_id):
        return ChannelReply(tickle=True)
    return ChannelReply(tickle=await source.tickler.wait(computer_id, wait))


@router.post("/agent/status", response_model=StatusAck)
async def status(request: Request, computer_id: AgentId, batch: StatusBatch) -> StatusAck:
    if len(batch.events) > MAX_EVENTS_PER_BATCH:
        raise InvalidInput(f"at most {MAX_EVENTS_PER_BATCH} status events per batch")
    for event in batch.events:
        if event.computer_id != computer_id:
            raise InvalidInput(
                f"status event {event.id} names computer {event.computer_id}, "
                f"but the credential is computer {computer_id}"
            )
    return await source_of(request).accept_status(computer_id, batch.events)
