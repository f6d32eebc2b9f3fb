"""Assign computers to task servers: gather the facts, ask ``assignment_rules.choose``, record it.

Many at a time. After a power cut thousands of agents ask within their start-up
window (R11), so their requests are assigned in batches (``ns.batches``), each one
transaction with a fixed number of statements whatever its size: the askers'
computers and collections, the task servers, the sites and the applied documents
are read once (``Picture``); every computer is written by one statement, every
record by another, and each task server's places are taken by one.

The client limit must hold when thousands ask at once. Counting each server's
computers before choosing cannot do that: concurrent assignments all count before
any commits. So each task server keeps ``assigned_count``, and places are taken by
a conditional UPDATE (``... WHERE assigned_count + n <= client_limit``) in the
transaction that records the assignments. The database serialises those updates
per task server row (a row lock on PostgreSQL, the single writer on SQLite), so
assignments to different task servers run side by side, and an asker that finds
its choice full chooses again. Within a batch the picture's loads follow the
choices made so far, so the batch itself neither overfills nor unbalances.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, case, insert, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from taskfleet.ns import drafts, registry, sites
from taskfleet.ns.agent_config import AgentConfig
from taskfleet.ns.assignment_rules import Candidate, Decision, ResolvedEntry, SiteInfo, choose
from taskfleet.ns.state import NSState, after_commit, agents_changed
from taskfleet.protocol.messages import AgentSettings, Assignment
from taskfleet.storage.models import (
    AssignmentRecord,
    Base,
    Collection,
    CollectionMembership,
    Computer,
    TaskServer,
)


@dataclass(eq=False)
class Asker:
    """A computer asking which task server to use (R3), as the assignment reads it."""

    id: int
    name: str
    addresses: tuple[str, ...]
    holds: int | None  # the task server whose place it has now (None: the NS's)
    collections: frozenset[str]  # names of the collections it is in
    failed_task_server: int | None = None  # R4 failover: the one it gave up on
    agent_reason: str = ""
    changed: bool = False  # its facts changed in this transaction


@dataclass
class Picture:
    """What R3 decides on, read once per batch, with the loads as the batch leaves them."""

    servers: dict[int, Candidate]
    urls: dict[int, str]
    policy: list[ResolvedEntry]
    sites: list[SiteInfo]
    config: AgentConfig  # the applied agent configuration
    # Task servers found at their limit when taking places in this transaction.
    full: set[int] = field(default_factory=set)

    def move(self, holds: int | None, wanted: int | None, places: int = 1) -> None:
        """Count ``places`` moving from ``holds`` to ``wanted`` (negative: moving back)."""
        if holds == wanted:
            return
        for ts_id, change in ((holds, -places), (wanted, places)):
            if ts_id in self.servers:
                ts = self.servers[ts_id]
                self.servers[ts_id] = dataclasses.replace(ts, load=ts.load + change)


async def picture(session: AsyncSession) -> Picture:
    now = time.time()
    site_list, explicit = await sites.layout(session)
    # populate_existing: a second picture in the same transaction must see the counts
    # as they are now, not as the session first loaded them.
    rows = await session.execute(
        select(TaskServer, Computer.addresses)
        .join(Computer, Computer.id == TaskServer.computer_id)
        .execution_options(populate_existing=True)
    )
    servers: dict[int, Candidate] = {}
    urls: dict[int, str] = {}
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
            load=ts.assigned_count,
            client_limit=ts.client_limit,
        )
        urls[ts.id] = ts.url
        by_name[ts.name] = ts.id
    applied = await drafts.applied(session)
    policy = [
        ResolvedEntry(e.collection, tuple(by_name[n] for n in e.task_servers if n in by_name))
        for e in applied.policy.entries
    ]
    return Picture(servers, urls, policy, site_list, applied.agent_config)


async def decide(
    session: AsyncSession,
    asker: Asker,
    seen: Picture,
    exclude: frozenset[int] = frozenset(),
    *,
    holds: int | None,
    full: frozenset[int] = frozenset(),
) -> Decision:
    """R3 for ``asker``, which holds a place on task server ``holds`` (or none); ``full``:
    task servers found at their limit when taking a place. One step of the assignment's
    transaction (``session``), on what ``seen`` read in it."""
    servers = seen.servers
    adjusted = {ts_id for ts_id in full if ts_id in servers and ts_id != holds}
    if holds in servers:
        adjusted.add(holds)
    if adjusted:
        servers = dict(servers)
        for ts_id in adjusted:
            ts = servers[ts_id]
            # Its own place does not count against the server it already has.
            load = ts.load - 1 if ts_id == holds else max(ts.load, ts.client_limit)
            servers[ts_id] = dataclasses.replace(ts, load=load)
    return choose(
        addresses=asker.addresses,
        member_of=frozenset(e.collection for e in seen.policy if e.collection in asker.collections),
        policy=seen.policy,
        servers=servers,
        sites=seen.sites,
        exclude=exclude,
    )


def _after_release(releases: int) -> Any:
    return case(
        (TaskServer.assigned_count > releases, TaskServer.assigned_count - releases), else_=0
    )


async def _update_places(session: AsyncSession, ts_id: int, releases: int, claims: int) -> bool:
    """Give back ``releases`` places on ``ts_id`` and take ``claims``, if its client limit
    allows them all."""
    places = _after_release(releases) + claims
    statement = update(TaskServer).where(TaskServer.id == ts_id).values(assigned_count=places)
    if claims:
        statement = statement.where(places <= TaskServer.client_limit)
    result = await session.execute(statement.execution_options(synchronize_session=False))
    assert isinstance(result, CursorResult)
    return bool(result.rowcount == 1)


async def _adjust(session: AsyncSession, ts_id: int, releases: int, claims: int) -> int:
    """Give back ``releases`` places on ``ts_id`` and take up to ``claims``, as far as its
    client limit allows; returns how many were taken."""
    if await _update_places(session, ts_id, releases, claims):
        return claims
    if claims == 0 or (claims == 1 and releases == 0):
        return 0
    # Not room for all: the releases, then one place at a time until it is full.
    if releases:
        await _update_places(session, ts_id, releases, 0)
    taken = 0
    while taken < claims and await _update_places(session, ts_id, 0, 1):
        taken += 1
    return taken


async def _take_places(
    session: AsyncSession, seen: Picture, moves: list[tuple[Asker, Decision]]
) -> list[Asker]:
    """Move each asker's place to the task server chosen for it; returns those whose
    choice was full (they hold what they held, or nothing if that place was given back
    first). Rows are locked in id order, so two batches moving places in opposite
    directions between the same servers cannot deadlock."""
    movers = [(a, d.task_server_id) for a, d in moves if a.holds != d.task_server_id]
    lost: list[Asker] = []
    for ts_id in sorted({i for a, w in movers for i in (a.holds, w) if i is not None}):
        leaving = [a for a, _ in movers if a.holds == ts_id and a not in lost]
        entering = [a for a, wanted in movers if wanted == ts_id]
        taken = await _adjust(session, ts_id, len(leaving), len(entering))
        for asker in leaving:
            asker.holds = None
        for asker in entering[:taken]:
            asker.holds = ts_id
        if taken < len(entering):
            seen.full.add(ts_id)
            lost.extend(entering[taken:])
    for asker, wanted in movers:
        if asker in lost:
            seen.move(asker.holds, wanted, -1)  # what the choice counted did not happen
    return lost


async def _write(
    session: AsyncSession, rows: list[tuple[Asker, Decision, str]], now: float
) -> None:
    """Every asker's computer row, by one statement (in id order: no deadlock between
    batches that share computers)."""
    table = Base.metadata.tables[Computer.__tablename__]
    await session.execute(
        update(table)
        .where(table.c.id == bindparam("computer_id"))
        .values(
            task_server_id=bindparam("ts"),
            assign_step=bindparam("step"),
            assign_reason=bindparam("reason"),
            assigned_at=bindparam("now"),
            last_contact=bindparam("now"),
        ),
        [
            {"computer_id": a.id, "ts": d.task_server_id, "step": d.step, "reason": r, "now": now}
            for a, d, r in sorted(rows, key=lambda row: row[0].id)
        ],
    )


async def assign_many(
    state: NSState, session: AsyncSession, askers: Sequence[Asker]
) -> list[Assignment]:
    """R3 for every asker (distinct computers), in ``session``'s transaction; the task
    servers whose agents changed are told once it commits."""
    assert len({a.id for a in askers}) == len(askers), "a computer asks once per batch"
    seen = await picture(session)
    previous = {a.id: a.holds for a in askers}
    decisions: dict[int, tuple[Decision, str]] = {}
    pending = list(askers)
    now = time.time()
    while pending:
        # Ends: every asker that lost its place adds a server to ``seen.full``, which
        # later decisions treat as at its limit, and the NS itself (None) has room.
        for asker in pending:
            failed = asker.failed_task_server
            exclude = frozenset() if failed is None else frozenset({failed})
            decision = await decide(
                session, asker, seen, exclude, holds=asker.holds, full=frozenset(seen.full)
            )
            reason = decision.reason
            if asker.failed_task_server is not None:
                why = asker.agent_reason or "unreachable"
                reason = f"failover from task server #{asker.failed_task_server} ({why}); {reason}"
            decisions[asker.id] = decision, reason
            seen.move(asker.holds, decision.task_server_id)
        # Written first, the places taken last: a task server's row then stays locked
        # (PostgreSQL) for a few statements and the commit, which is what bounds how
        # fast one task server takes agents in a stampede.
        await _write(session, [(a, *decisions[a.id]) for a in pending], now)
        pending = await _take_places(session, seen, [(a, decisions[a.id][0]) for a in pending])
    records = [
        {"computer_id": a.id, "task_server_id": d.task_server_id, "step": d.step}
        | {"reason": r, "at": now}
        for a, (d, r) in ((a, decisions[a.id]) for a in askers)
    ]
    await session.execute(insert(Base.metadata.tables[AssignmentRecord.__tablename__]), records)
    # Task servers keep a map of their agents: tell those whose agents changed (a new
    # one, one gone, or facts that may change settings). A re-ask that keeps its server
    # changes nothing there (after a power cut, most of them).
    moved = [a for a in askers if a.changed or previous[a.id] != a.holds]
    if moved:
        told = {ts for a in moved for ts in (previous[a.id], a.holds) if ts is not None}
        agents_changed(session)

        async def tell() -> None:
            for ts_id in sorted(told):
                await state.hub.bump(ts_id)

        after_commit(session, tell)
    out = []
    for asker in askers:
        decision, reason = decisions[asker.id]
        ts_id = decision.task_server_id
        out.append(
            Assignment(
                url=state.settings.public_url if ts_id is None else seen.urls[ts_id],
                task_server_id=ts_id,
                task_server_name=decision.task_server_name,
                step=decision.step,
                reason=reason,
                settings=seen.config.settings_in(asker.collections),
            )
        )
    return out


async def collections_of(session: AsyncSession, computer_ids: Iterable[int]) -> dict[int, set[str]]:
    """Computer id -> names of the collections it is in (stored membership)."""
    out: dict[int, set[str]] = {}
    rows = await session.execute(
        select(CollectionMembership.computer_id, Collection.name)
        .join(Collection, Collection.id == CollectionMembership.collection_id)
        .where(CollectionMembership.computer_id.in_(sorted(set(computer_ids))))
    )
    for computer_id, name in rows.all():
        out.setdefault(computer_id, set()).add(name)
    return out


async def assign(
    state: NSState,
    session: AsyncSession,
    computer: Computer,
    failed_task_server: int | None = None,
    agent_reason: str = "",
) -> Assignment:
    """R3 for one computer, in ``session``'s transaction."""
    collections = (await collections_of(session, [computer.id])).get(computer.id, set())
    asker = Asker(
        id=computer.id,
        name=computer.name,
        addresses=tuple(computer.addresses or ()),
        holds=computer.task_server_id,
        collections=frozenset(collections),
        failed_task_server=failed_task_server,
        agent_reason=agent_reason,
    )
    [assigned] = await assign_many(state, session, [asker])
    # The row was written by a statement, not through this object: keep the object true.
    for name, value in (
        ("task_server_id", assigned.task_server_id),
        ("assign_step", assigned.step),
        ("assign_reason", assigned.reason),
    ):
        set_committed_value(computer, name, value)
    return assigned


async def agent_settings(session: AsyncSession, computer: Computer) -> AgentSettings:
    collections = (await collections_of(session, [computer.id])).get(computer.id, set())
    return (await drafts.applied(session)).agent_config.settings_in(collections)
