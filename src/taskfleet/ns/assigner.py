"""Assign a computer to a task server: gather the facts, ask ``assignment.choose``, record it.

The client limit must hold when thousands of agents ask at once (after a power cut).
Counting each server's computers before choosing cannot do that: concurrent
assignments all count before any commits. So each task server keeps
``assigned_count``, and the computer's place is taken by a conditional UPDATE
(``... WHERE assigned_count < client_limit``) in the transaction that records the
assignment. The database serialises those updates per task server row (a row lock
on PostgreSQL, the single writer on SQLite), so assignments to different task
servers run side by side, and one that finds its choice full chooses again.
"""

from __future__ import annotations

import time
from functools import partial

from sqlalchemy import select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.ns import documents, registry, sites
from taskfleet.ns.assignment import Candidate, Decision, PolicyEntry, SiteInfo, choose
from taskfleet.ns.collections import Membership, load_membership
from taskfleet.ns.state import NSState, after_commit
from taskfleet.protocol.messages import AgentSettings, Assignment
from taskfleet.storage.models import AssignmentRecord, Computer, Site, TaskServer


async def decide(
    session: AsyncSession,
    computer: Computer,
    membership: Membership,
    exclude: frozenset[int] = frozenset(),
    *,
    holds: int | None,
    full: frozenset[int] = frozenset(),
) -> Decision:
    """R3 for ``computer``, which holds a place on task server ``holds`` (or none); ``full``:
    task servers this assignment already found at their limit when taking a place."""
    now = time.time()
    explicit = await sites.served_by(session)
    # populate_existing: a second decision in the same transaction must see the counts
    # as they are now, not as the session first loaded them.
    rows = await session.execute(
        select(TaskServer, Computer.addresses)
        .join(Computer, Computer.id == TaskServer.computer_id)
        .execution_options(populate_existing=True)
    )
    servers: dict[int, Candidate] = {}
    by_name: dict[str, int] = {}
    for ts, addresses in rows.all():
        ok, why = registry.availability(ts, now)
        # Its own place does not count against the server it already has.
        load = ts.assigned_count - (1 if ts.id == holds else 0)
        if ts.id in full:
            load = max(load, ts.client_limit)
        servers[ts.id] = Candidate(
            id=ts.id,
            name=ts.name,
            available=ok,
            why_unavailable=why,
            addresses=tuple(addresses or ()),
            site_ids=frozenset(explicit.get(ts.id, ())),
            load=load,
            client_limit=ts.client_limit,
        )
        by_name[ts.name] = ts.id
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


async def _claim(session: AsyncSession, ts_id: int) -> bool:
    """Take one place on ``ts_id`` if it is below its client limit."""
    result = await session.execute(
        update(TaskServer)
        .where(TaskServer.id == ts_id, TaskServer.assigned_count < TaskServer.client_limit)
        .values(assigned_count=TaskServer.assigned_count + 1)
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    return bool(result.rowcount == 1)


async def _release(session: AsyncSession, ts_id: int) -> None:
    await session.execute(
        update(TaskServer)
        .where(TaskServer.id == ts_id, TaskServer.assigned_count > 0)
        .values(assigned_count=TaskServer.assigned_count - 1)
        .execution_options(synchronize_session=False)
    )


async def _move(session: AsyncSession, holds: int | None, wanted: int | None) -> int | None:
    """Move the computer's place from ``holds`` to ``wanted``; returns the server whose
    place it holds afterwards (``wanted`` on success). Rows are locked in id order, so
    two agents moving opposite ways between the same servers cannot deadlock."""
    if holds == wanted:
        return holds
    for ts_id in sorted(i for i in (holds, wanted) if i is not None):
        if ts_id == wanted:
            if not await _claim(session, ts_id):
                return holds
        else:
            await _release(session, ts_id)
            holds = None
    return wanted


async def assign(
    state: NSState,
    session: AsyncSession,
    computer: Computer,
    failed_task_server: int | None = None,
    agent_reason: str = "",
) -> Assignment:
    exclude = frozenset({failed_task_server}) if failed_task_server is not None else frozenset()
    membership = await load_membership(session, [computer.id])
    settings = await agent_settings(session, computer, membership)
    previous = holds = computer.task_server_id
    full: set[int] = set()
    record: AssignmentRecord | None = None
    while True:
        # Ends: every failed claim adds a server to ``full``, which the next decision
        # treats as at its limit, and the NS itself (None) always has room.
        decision = await decide(
            session, computer, membership, exclude, holds=holds, full=frozenset(full)
        )
        reason = decision.reason
        if failed_task_server is not None:
            why = agent_reason or "unreachable"
            reason = f"failover from task server #{failed_task_server} ({why}); {reason}"
        now = time.time()
        computer.task_server_id = decision.task_server_id
        computer.assign_step = decision.step
        computer.assign_reason = reason
        computer.assigned_at = computer.last_contact = now
        if record is None:
            record = AssignmentRecord(computer_id=computer.id)
            session.add(record)
        record.task_server_id = decision.task_server_id
        record.step, record.reason, record.at = decision.step, reason, now
        # Written first, the place taken last: the task server's row then stays locked
        # (PostgreSQL) for one statement and the commit, which is what bounds how fast
        # one task server takes agents in a stampede.
        await session.flush()
        holds = await _move(session, holds, decision.task_server_id)
        if holds == decision.task_server_id:
            break
        assert decision.task_server_id is not None
        full.add(decision.task_server_id)
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
        settings=settings,
    )


async def agent_settings(
    session: AsyncSession, computer: Computer, membership: Membership | None = None
) -> AgentSettings:
    if membership is None:
        membership = await load_membership(session, [computer.id])
    document = await documents.applied_document(session, documents.AGENT_CONFIG)
    return documents.settings_for(document, membership, computer)
