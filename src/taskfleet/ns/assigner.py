"""Assign a computer to a task server: gather the facts, ask ``assignment.choose``, record it."""

from __future__ import annotations

import time
from functools import partial

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.ns import documents, registry, sites
from taskfleet.ns.assignment import Candidate, Decision, PolicyEntry, SiteInfo, choose
from taskfleet.ns.collections import load_membership
from taskfleet.ns.state import NSState, after_commit
from taskfleet.protocol.messages import AgentSettings, Assignment
from taskfleet.storage.models import AssignmentRecord, Computer, Site, TaskServer


async def decide(
    session: AsyncSession, computer: Computer, exclude: frozenset[int] = frozenset()
) -> Decision:
    now = time.time()
    load = await registry.loads(session)
    if computer.task_server_id is not None:
        # Its own place does not count against the server it already has.
        load[computer.task_server_id] = load.get(computer.task_server_id, 1) - 1
    explicit = await sites.served_by(session)
    rows = await session.execute(
        select(TaskServer, Computer.addresses).join(Computer, Computer.id == TaskServer.computer_id)
    )
    servers: dict[int, Candidate] = {}
    by_name: dict[str, int] = {}
    for ts, addresses in rows.all():
        ok, why = registry.availability(ts, now)
        servers[ts.id] = Candidate(
            id=ts.id,
            name=ts.name,
            available=ok,
            why_unavailable=why,
            addresses=tuple(addresses or ()),
            site_ids=frozenset(explicit.get(ts.id, ())),
            load=load.get(ts.id, 0),
            client_limit=ts.client_limit,
        )
        by_name[ts.name] = ts.id
    membership = await load_membership(session, [computer.id])
    policy_doc = await documents.applied_document(session, documents.POLICY)
    policy = [
        PolicyEntry(e["collection"], tuple(by_name[n] for n in e["task_servers"] if n in by_name))
        for e in policy_doc["entries"]
    ]
    member_of = frozenset(
        e.collection for e in policy if membership.contains(e.collection, computer)
    )
    site_rows = (await session.scalars(select(Site))).all()
    return choose(
        addresses=list(computer.addresses or []),
        member_of=member_of,
        policy=policy,
        servers=servers,
        sites=[SiteInfo(s.id, s.name, tuple(s.subnets)) for s in site_rows],
        exclude=exclude,
    )


async def assign(
    state: NSState,
    session: AsyncSession,
    computer: Computer,
    failed_task_server: int | None = None,
    agent_reason: str = "",
) -> Assignment:
    exclude = frozenset({failed_task_server}) if failed_task_server is not None else frozenset()
    decision = await decide(session, computer, exclude)
    reason = decision.reason
    if failed_task_server is not None:
        why = agent_reason or "unreachable"
        reason = f"failover from task server #{failed_task_server} ({why}); {reason}"
    previous = computer.task_server_id
    now = time.time()
    computer.task_server_id = decision.task_server_id
    computer.assign_step = decision.step
    computer.assign_reason = reason
    computer.assigned_at = now
    computer.last_contact = now
    session.add(
        AssignmentRecord(
            computer_id=computer.id,
            task_server_id=decision.task_server_id,
            step=decision.step,
            reason=reason,
            at=now,
        )
    )
    state.agents_changed()
    for ts_id in {previous, decision.task_server_id}:
        if ts_id is not None:
            after_commit(session, partial(state.hub.bump, ts_id))
    url = state.settings.public_url
    if decision.task_server_id is not None:
        ts = await session.get(TaskServer, decision.task_server_id)
        assert ts is not None
        url = ts.url
    return Assignment(
        url=url,
        task_server_id=decision.task_server_id,
        task_server_name=decision.task_server_name,
        step=decision.step,
        reason=reason,
        settings=await agent_settings(session, computer),
    )


async def agent_settings(session: AsyncSession, computer: Computer) -> AgentSettings:
    membership = await load_membership(session, [computer.id])
    document = await documents.applied_document(session, documents.AGENT_CONFIG)
    return documents.settings_for(document, membership, computer)
