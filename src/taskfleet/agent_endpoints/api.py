"""Endpoints agents call on their task server (and on the NS in its fallback role).

GET  /agent/poll             work waiting for me, and my current settings (R5)
GET  /agent/channel?wait=S   notification channel: a long poll that returns
                             at once when tickled (R6), with the work waiting
POST /agent/status           a batch of status events (R8), body ``StatusBatch``; every
                             field checked (R12, ``protocol.fields``): a batch with one
                             bad field is refused whole (400 naming it), nothing spooled
GET  /hello                  bare endpoint, the poll benchmark's baseline
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import TypeAdapter

from taskfleet.agent_endpoints.channels import ChannelGate
from taskfleet.agent_endpoints.work_source import WorkSource
from taskfleet.errors import Forbidden, InvalidInput, Unauthenticated
from taskfleet.protocol.messages import (
    AgentSettings,
    ChannelReply,
    PollReply,
    StatusBatch,
    to_json,
)
from taskfleet.protocol.transport import parse_credential
from taskfleet.server.metrics import ServerMetrics
from taskfleet.server.peers import check_peer, peer_of
from taskfleet.server.validation import parse_json

MAX_WAIT_S = 300.0
MIN_HOLD_S = 10.0  # inside the agent's own timeout: it waits for wait + 15 s
DEFAULT_WAIT_S = 50.0
MAX_EVENTS_PER_BATCH = 1000


def source_of(request: Request) -> WorkSource:
    source: WorkSource = request.app.state.work_source
    return source


async def authenticated(request: Request) -> tuple[int, AgentSettings]:
    """The calling agent's computer id and settings, or Unauthenticated/NotAssigned/..."""
    header = request.headers.get("authorization", "")
    credential = parse_credential(header) if header else None
    if credential is None or credential.kind != "agent":
        raise Unauthenticated("agent credential missing or malformed; enrol the agent again")
    source = source_of(request)
    # Over TLS: the connection's client certificate must be this agent's, not revoked.
    try:
        check_peer(request.scope, "agent", credential.principal, source.revoked)
    except (Forbidden, Unauthenticated) as exc:
        if peer_of(request.scope) is not None:  # another's or a revoked one: a claim
            await source.refused(credential.principal, "certificate", exc.message)
        raise
    # Memory first: an agent the task server knows costs no await and no round trip.
    settings = source.known(credential.principal, credential.secret)
    if settings is None:
        client = request.client
        settings = await source.authenticate(
            credential.principal, credential.secret, client.host if client else ""
        )
    return credential.principal, settings


router = APIRouter(tags=["agent"])


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


async def poll(request: Request) -> Response:
    # The hot path, called by every agent every Task Request Interval: a plain
    # Starlette endpoint (no dependency injection, no response model) that answers
    # "nothing new" from memory with a body encoded once per settings value.
    computer_id, settings = await authenticated(request)
    source = source_of(request)
    if not source.has_work(computer_id):
        return _nothing_new(dataclasses.astuple(settings))
    reply = PollReply(
        work=await source.fetch_work(computer_id),
        settings=settings,
        cancel=await source.take_cancels(computer_id),
    )
    return Response(json.dumps(to_json(reply)), media_type="application/json")


@functools.lru_cache(maxsize=256)
def _nothing_new(values: tuple[object, ...]) -> Response:
    # One Response per settings value (every AgentSettings field, in order), sent again
    # and again: a Response without background task or cookies is not changed by sending it.
    settings = AgentSettings(*values)  # type: ignore[arg-type]
    body = json.dumps(to_json(PollReply(work=[], settings=settings)))
    return Response(body, media_type="application/json")


async def channel(request: Request) -> Response:
    # Every agent keeps one of these open all the time, so it is kept lean like poll:
    # no dependency injection, a pre-encoded reply (docs/notification-channel.md).
    computer_id, _ = await authenticated(request)
    wait = held_for(computer_id, _wait_seconds(request.query_params.get("wait")), time.time())
    source = source_of(request)
    if source.has_work(computer_id):
        return await _tickle_with_work(source, computer_id)
    # Busy (503, Retry-After) when the open files allow no more channels, or stopping.
    gate: ChannelGate = request.app.state.channels
    gate.admit(computer_id)
    try:
        tickled = await source.tickler.wait(computer_id, wait)
    finally:
        gate.release(computer_id)
    if gate.stopping:  # woken by ChannelGate.stop: come back to the restarted server
        raise gate.stopping_error()
    if not tickled:  # the wait ran out, or approval was lost (Tickler.wake_all): which?
        await authenticated(request)  # from memory while all is well; else refuses
    if tickled and source.has_work(computer_id) and not await request.is_disconnected():
        # (work handed to a connection the agent already closed would wait for the
        # hand-out retry; its next channel gets it instead)
        return await _tickle_with_work(source, computer_id)
    return Response(_TICKLE if tickled else _QUIET, media_type="application/json")


async def _tickle_with_work(source: WorkSource, computer_id: int) -> Response:
    # The tickle carries the work itself: one request per agent less when a run starts
    # on thousands of computers at once (R6), and the work arrives a round trip sooner.
    reply = ChannelReply(
        tickle=True,
        work=await source.fetch_work(computer_id),
        cancel=await source.take_cancels(computer_id),  # instances to stop (ns.cancel)
    )
    return Response(json.dumps(to_json(reply)), media_type="application/json")


# Plain Starlette routes: they skip FastAPI's request handling, which bench/poll.py
# measured at about 15 % of the poll rate and 5 KiB of every open channel. So FastAPI
# does not describe them: ns.agent_openapi does, in the NS's OpenAPI document.
router.add_route("/hello", hello, methods=["GET"], include_in_schema=False)
router.add_route("/agent/poll", poll, methods=["GET"], include_in_schema=False)
router.add_route("/agent/channel", channel, methods=["GET"], include_in_schema=False)


_TICKLE = json.dumps(to_json(ChannelReply(tickle=True))).encode()
_QUIET = json.dumps(to_json(ChannelReply(tickle=False))).encode()


def held_for(computer_id: int, wait: float, now: float) -> float:
    """How long to hold an agent's channel: until its own next renewal instant (R11).

    Each agent renews at instants of a phase of its own, one ``wait`` apart, so after
    its first channel each is held the whole wait, and renewals stay spread evenly over
    time whatever opened the channels together: a run that tickled every agent at once,
    a restart, a power cut. (Holding each for the same time would bring them all back
    together at every wait, forever.) The first hold is at least MIN_HOLD_S and at most
    ``wait + MIN_HOLD_S``, well inside the agent's own timeout (wait + 15 s).
    """
    phase = (computer_id * 2654435761 % 2**32) / 2**32 * wait  # Knuth's multiplicative hash
    hold = (phase - now) % wait
    return hold + wait if hold < MIN_HOLD_S else hold


def _wait_seconds(text: str | None) -> float:
    if text is None:
        return DEFAULT_WAIT_S
    try:
        wait = float(text)
    except ValueError:
        wait = -1.0
    if not 0 < wait <= MAX_WAIT_S:  # also refuses nan
        raise InvalidInput(f"wait={text!r}: give seconds, more than 0 and at most {MAX_WAIT_S:g}")
    return wait


# Validated by pydantic as FastAPI would, without FastAPI's request handling: thousands
# of agents report at once after a run, and the task server's CPU is what they wait for.
_STATUS_BATCH = TypeAdapter(StatusBatch)


async def status(request: Request) -> Response:
    computer_id, _ = await authenticated(request)
    batch = parse_json(_STATUS_BATCH, await request.body())
    if len(batch.events) > MAX_EVENTS_PER_BATCH:
        raise InvalidInput(f"at most {MAX_EVENTS_PER_BATCH} status events per batch")
    for event in batch.events:
        if event.computer_id != computer_id:
            # Identity bounds what an agent may do: it writes its own status only.
            why = f"status event {event.id} names computer {event.computer_id}"
            await source_of(request).refused(computer_id, "status", why)
            raise Forbidden(
                f"{why}, but the credential is computer {computer_id}'s: an agent reports "
                "only its own status; nothing was accepted"
            )
    ack = await source_of(request).accept_status(computer_id, batch.events)
    metrics: ServerMetrics = request.app.state.metrics
    metrics.agent_reported(ack)
    return Response(json.dumps(to_json(ack)), media_type="application/json")


router.add_route("/agent/status", status, methods=["POST"], include_in_schema=False)
