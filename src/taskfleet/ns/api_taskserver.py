"""The API task servers call on the NS (``/api/ts``). R1 is enforced by ``auth``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy import select, update

from taskfleet.errors import InvalidInput, NotAssigned
from taskfleet.ns import (
    cancel,
    certificates,
    registration,
    registry,
    runs,
    status_intake,
)
from taskfleet.ns.auth import TaskServerAny, TaskServerApproved
from taskfleet.ns.collections import load_membership
from taskfleet.ns.drafts import applied
from taskfleet.ns.identity import presented
from taskfleet.ns.metrics import ns_metrics
from taskfleet.ns.openapi import errors
from taskfleet.ns.state import ns_state
from taskfleet.protocol import pki
from taskfleet.protocol.fields import bounded_list
from taskfleet.protocol.messages import (
    MAX_STATUS_EVENTS,
    AgentEntry,
    AgentMap,
    Approval,
    Events,
    Heartbeat,
    HeartbeatReply,
    Registered,
    Registration,
    StatusAck,
    WorkBatch,
    WorkRequest,
)
from taskfleet.storage.models import MAX_ID, Computer, TaskServer

router = APIRouter(prefix="/api/ts", tags=["task server"])
MAX_SEEN = 100_000
MAX_CHANNELS = 100_000_000
MAX_WORK_BATCH = 10_000
MAX_KNOWN_RUNS = 10_000


@router.post("/register", response_model=Registered, responses=errors(401, 403, 409))
async def register(request: Request, body: Registration) -> Registered:
    """Register with a task-server token. Claiming an existing task server (its hardware
    id or name) needs its current credential in ``Authorization``, or an admin's
    'computer reset' (409 else)."""
    state = ns_state(request)
    key = ""
    if state.authority is not None:
        if not body.csr:
            raise InvalidInput(
                "csr is required: approval signs the task server's certificate request",
                field="csr",
            )
        if not body.url.startswith("https://"):
            raise InvalidInput(
                f"url {body.url!r}: this NS runs TLS, and its agents talk only HTTPS to task "
                "servers; give the task server an https:// --url",
                field="url",
            )
        key = certificates.csr_key_id(body.csr)  # a bad request fails before the token
    registered = await registration.register(state, body, presented(request, key))
    if key:  # kept for approval to sign, and for renewals
        async with state.session() as session:
            await session.execute(
                update(TaskServer)
                .where(TaskServer.id == registered.task_server_id)
                .values(csr=body.csr, key_id=key)
            )
    return registered


@router.post("/heartbeat", response_model=HeartbeatReply)
async def heartbeat(request: Request, ts_id: TaskServerAny, body: Heartbeat) -> HeartbeatReply:
    state = ns_state(request)
    if len(body.seen) > MAX_SEEN:
        raise InvalidInput(f"at most {MAX_SEEN} entries in 'seen'")
    registry.check_settings(body.client_limit, body.heartbeat_period_s)
    if body.channel_capacity is not None and not 0 <= body.channel_capacity <= MAX_CHANNELS:
        raise InvalidInput(f"channel_capacity must be between 0 and {MAX_CHANNELS}")
    async with state.session() as session:
        ts = await session.get(TaskServer, ts_id)
        assert ts is not None
        # The task server's own row is written last (the autoflush before the queries
        # below would write it first), so the row lock that assignments to this task
        # server also take (PostgreSQL) is held only from here to the commit.
        now = time.time()
        if body.seen and ts.approval == Approval.APPROVED:
            # (keys are digits, values finite times: protocol.fields checked them)
            seen = {int(k): v for k, v in body.seen.items() if 0 < int(k) <= MAX_ID}
            mine = set(
                (
                    await session.scalars(
                        select(Computer.id).where(
                            Computer.task_server_id == ts_id, Computer.id.in_(list(seen))
                        )
                    )
                ).all()
            )
            if mine:
                await session.execute(
                    update(Computer), [{"id": cid, "last_contact": seen[cid]} for cid in mine]
                )
        ts.last_heartbeat = now
        if body.channel_capacity is not None:
            ts.channel_capacity = body.channel_capacity
        if body.dead_letters is not None:  # (None: a task server older than dead letters)
            ts.dead_letters = body.dead_letters
            ts.dead_letter_reason = body.dead_letter_reason if body.dead_letters else None
        registry.heartbeat_report(session, ts, body.client_limit, body.heartbeat_period_s)
        reply = HeartbeatReply(Approval(ts.approval), ts.enabled, state.agents_epoch)
        if state.authority is not None:
            reply.crl_number = state.revocations.number
            reply.ca_bundle_id = pki.sha256_hex(state.authority.bundle_pem)
            reply.certificate = await certificates.for_task_server(
                state, session, ts, body.certificate_serial
            )
        return reply


@router.get("/events", response_model=Events)
async def events(
    request: Request,
    ts_id: TaskServerApproved,
    since: Annotated[int, Query()] = -1,
    wait: Annotated[float, Query(ge=0, le=120)] = 25.0,
) -> Events:
    """Long poll: returns when work arrives for this task server's computers, or after ``wait``."""
    state = ns_state(request)
    version = state.hub.version(ts_id)
    if since == version and wait > 0:
        version = await state.hub.wait(ts_id, since, wait)
    async with state.session() as session:
        waiting = await runs.work_waiting(
            session, ts_id, state.settings.redeliver_after_s
        ) or await cancel.notices_waiting(session, ts_id, state.settings.redeliver_after_s)
    return Events(version=version, agents_epoch=state.agents_epoch, work_waiting=waiting)


async def _entries(request: Request, ts_id: int, computer_id: int | None) -> AgentMap:
    state = ns_state(request)
    # The epoch before the rows: it moves only after a change has committed, so a map
    # read after it holds every change up to it. Read after the rows, it could be newer
    # than they are, and the task server would keep the old rows under the new epoch.
    epoch = state.agents_epoch
    async with state.session() as session:
        query = select(Computer).where(Computer.task_server_id == ts_id)
        if computer_id is not None:
            query = query.where(Computer.id == computer_id)
        computers = (await session.scalars(query)).all()
        config = (await applied(session)).agent_config
        membership = await load_membership(
            session,
            query.with_only_columns(Computer.id),
            names=[entry.collection for entry in config.entries],
        )
        agents = [
            AgentEntry(c.id, c.credential_hash or "", config.settings_for(membership, c))
            for c in computers
            if c.credential_hash
        ]
    return AgentMap(agents_epoch=epoch, agents=agents)


@router.get("/agents", response_model=AgentMap)
async def agents(request: Request, ts_id: TaskServerApproved) -> AgentMap:
    """Every agent assigned to this task server, with what it needs to check their credentials."""
    return await _entries(request, ts_id, None)


@router.get("/agents/{computer_id}", response_model=AgentMap, responses=errors(409))
async def agent(request: Request, ts_id: TaskServerApproved, computer_id: int) -> AgentMap:
    found = await _entries(request, ts_id, computer_id)
    if not found.agents:
        raise NotAssigned(f"computer {computer_id} is not assigned to this task server")
    return found


@router.post("/work", response_model=WorkBatch)
async def work(request: Request, ts_id: TaskServerApproved, body: WorkRequest) -> WorkBatch:
    """The work waiting for this task server's computers, many computers per call."""
    if not 1 <= body.limit <= MAX_WORK_BATCH:
        raise InvalidInput(f"limit: give 1 to {MAX_WORK_BATCH} instances per call", field="limit")
    if len(body.known_runs) > MAX_KNOWN_RUNS:
        raise InvalidInput(f"known_runs: at most {MAX_KNOWN_RUNS} run ids", field="known_runs")
    state = ns_state(request)
    async with state.session() as session:
        batch = await runs.deliver_batch(
            session,
            ts_id,
            body.limit,
            set(body.known_runs),
            state.settings.redeliver_after_s,
            secrets=state.secrets,
        )
        # Instances to drop or stop (ns.cancel): canceled, or expired while held there.
        batch.cancel = await cancel.take_notices(
            session, state.settings.redeliver_after_s, task_server_id=ts_id
        )
    ns_metrics(request).work_handed_out(batch)
    return batch


@dataclass
class RelayedBatch:
    """A ``StatusBatch`` whose events the NS checks one by one (``ns.status_intake``):
    one bad event is rejected alone, with the reason, and never refuses its batch."""

    events: Annotated[list[dict[str, Any]], bounded_list(MAX_STATUS_EVENTS)]


@router.post("/status", response_model=StatusAck)
async def relay_status(
    request: Request, ts_id: TaskServerApproved, batch: RelayedBatch
) -> StatusAck:
    """Status events of this task server's agents. Every event is checked and applied on
    its own; the reply names each event rejected and why (R12)."""
    state = ns_state(request)
    async with state.session() as session:
        ingested = await status_intake.relayed(session, batch.events, via_task_server=ts_id)
    state.hub.runs_changed(ingested.runs)  # committed: 'run --wait' followers see it now
    ns_metrics(request).relayed_status(len(batch.events), ingested.ack)
    return ingested.ack
