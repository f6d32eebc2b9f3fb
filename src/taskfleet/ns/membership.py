"""Stored membership: the collections each computer is in (table ``collection_membership``).

Readers (runs, assignment, the task servers' agent maps, the console) query the
table; only this module writes it, with what ``rules.Evaluator`` finds. It stays
true because everything that can move a computer in or out of a collection is an
ORM change in some session, and the flush hooks below recompute, in the same
transaction, what that change can affect:

- a computer added, or its name, OS, addresses or facts changed: that computer;
- a task server added or removed, or its approval changed: its computer;
- a static member added or removed: that computer;
- a collection added or removed, or its name or rules changed: that collection and
  every collection that includes or excludes it, over the whole fleet.

Statements that bypass the ORM (``insert(Computer)``, ``update(Computer)``) pass no
hook: code that writes those columns that way calls ``refresh``. (No rule reads
``last_contact`` or ``task_server_id``, so bulk updates of those need nothing.) At
every start the NS computes the computers that have no membership at all (``heal``):
a database from before this table, or computers inserted in bulk.

Concurrency. On PostgreSQL a flush with such changes first takes a shared advisory
lock, then an advisory lock per computer it changes (in id order), before it writes
anything; so two transactions changing one computer take turns, and the second reads
what the first committed. A collection change takes the shared lock exclusively, so
no refresh evaluates with the old collections while the fleet is re-evaluated. On
SQLite one writer at a time gives the same order: a refresh runs after a write of
its own transaction, which waited for any other writer to finish.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Connection,
    Select,
    delete,
    event,
    exists,
    func,
    insert,
    inspect,
    literal,
    select,
    text,
)
from sqlalchemy import tuple_ as tuple_of
from sqlalchemy.orm import Session

from taskfleet.ns.rules import Evaluator, Subject
from taskfleet.ns.singleton import lock_key
from taskfleet.storage.models import (
    Collection,
    CollectionMember,
    CollectionMembership,
    Computer,
    TaskServer,
)

# The advisory lock every NS replica takes for membership.
LOCK_KEY = lock_key("membership")
# One advisory lock per computer, in a key space of their own (two 32-bit keys), taken in
# id order. Not the computer's row lock: an approval refreshes the task server's computer
# with the task_server row locked, while a re-registration locks the computer row and
# then the task_server row, and the two would deadlock.
COMPUTER_LOCKS = lock_key("membership of a computer") >> 32
LOCK_COMPUTERS = text(
    "SELECT count(pg_advisory_xact_lock(:space, id)) "
    "FROM (SELECT unnest(CAST(:ids AS integer[])) AS id ORDER BY id) AS ids"
)
CHUNK = 2000  # computers per statement: well below both stores' limits on parameters
RULE_COLUMNS = ("name", "os", "addresses", "facts")
_PENDING = "taskfleet.membership"


@dataclass
class _Pending:
    added: list[Computer] = field(default_factory=list)  # their ids exist after the flush
    changed: list[Computer] = field(default_factory=list)
    computer_ids: set[int] = field(default_factory=set)
    collections: set[str] = field(default_factory=set)  # names, before and after a change


def _changed(obj: object, names: Iterable[str]) -> bool:
    attrs = inspect(obj).attrs
    return any(attrs[name].history.has_changes() for name in names)


def _values(obj: object, name: str) -> list[Any]:
    """The attribute's value before and after this flush."""
    history = inspect(obj).attrs[name].history
    return [*history.deleted, *history.unchanged, *history.added]


@event.listens_for(Session, "before_flush")
def _note_changes(session: Session, _flush: Any, _instances: Any) -> None:
    pending: _Pending = session.info.setdefault(_PENDING, _Pending())
    for obj in session.new:
        if isinstance(obj, Computer):
            pending.added.append(obj)
        elif isinstance(obj, TaskServer | CollectionMember):
            pending.computer_ids.add(obj.computer_id)
        elif isinstance(obj, Collection):
            pending.collections.add(obj.name)
    for obj in session.dirty:
        if isinstance(obj, Computer) and _changed(obj, RULE_COLUMNS):
            pending.changed.append(obj)
        elif isinstance(obj, TaskServer) and _changed(obj, ("approval", "computer_id")):
            pending.computer_ids.update(_values(obj, "computer_id"))
        elif isinstance(obj, Collection) and _changed(obj, ("name", "rules")):
            pending.collections.update(_values(obj, "name"))
    for obj in session.deleted:
        # A deleted computer's rows go with it (ON DELETE CASCADE).
        if isinstance(obj, TaskServer | CollectionMember):
            pending.computer_ids.add(obj.computer_id)
        elif isinstance(obj, Collection):
            pending.collections.add(obj.name)
    ids = pending.computer_ids | {c.id for c in pending.changed}
    if ids or pending.added or pending.collections:
        # Before the flush writes: a transaction holding a computer's lock that goes on
        # to lock a task_server row, and one holding that row that wants the computer's
        # lock (an approval), would deadlock.
        _lock(session.connection(), ids, everything=bool(pending.collections))


def _lock(conn: Connection, computer_ids: Iterable[int] = (), everything: bool = False) -> None:
    """PostgreSQL: the membership lock, shared (exclusive to re-evaluate collections over
    the fleet), then each computer's lock in id order. SQLite has one writer anyway."""
    if conn.dialect.name != "postgresql":
        return
    mode = "" if everything else "_shared"
    conn.execute(text(f"SELECT pg_advisory_xact_lock{mode}(:key)"), {"key": LOCK_KEY})
    for chunk in chunks(sorted(set(computer_ids))):
        conn.execute(LOCK_COMPUTERS, {"space": COMPUTER_LOCKS, "ids": chunk})


@event.listens_for(Session, "after_flush_postexec")
def _apply_changes(session: Session, _flush: Any) -> None:
    pending: _Pending | None = session.info.pop(_PENDING, None)
    if pending is None:
        return
    if pending.collections:
        rebuild(session.connection(), pending.collections, locked=True)
    ids = pending.computer_ids | {c.id for c in pending.changed}
    # A computer inserted by this flush, and not also made a static member or a task
    # server by it, has no static membership, no approval and no rows yet: evaluate it
    # as it is, without reading it back (the common case: an agent enrols).
    fresh = [_subject(c) for c in pending.added if c.id not in ids]
    if ids or fresh:
        refresh(session.connection(), ids, fresh, locked=True)


@event.listens_for(Session, "after_soft_rollback")
def _forget_changes(session: Session, _transaction: Any) -> None:
    session.info.pop(_PENDING, None)


def _subject(computer: Computer) -> Subject:
    return Subject(
        computer.id,
        computer.name,
        computer.os or "",
        tuple(computer.addresses or ()),
        computer.facts or {},
    )


def _collections(conn: Connection) -> dict[str, tuple[int, dict[str, Any]]]:
    rows = conn.execute(select(Collection.id, Collection.name, Collection.rules))
    return {name: (collection_id, rules or {}) for collection_id, name, rules in rows}


# A computer as the rules see it, with its approval if it is a task server.
SUBJECTS = select(
    Computer.id, Computer.name, Computer.os, Computer.addresses, Computer.facts, TaskServer.approval
).outerjoin(TaskServer, TaskServer.computer_id == Computer.id)


def _subjects(conn: Connection, query: Select[Any]) -> tuple[list[Subject], dict[int, str]]:
    subjects, approvals = [], {}
    for row in conn.execute(query):
        subjects.append(
            Subject(row.id, row.name, row.os, tuple(row.addresses or ()), row.facts or {})
        )
        if row.approval is not None:
            approvals[row.id] = row.approval
    return subjects, approvals


def chunks(ids: list[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def refresh(
    conn: Connection,
    computer_ids: Iterable[int],
    fresh: Iterable[Subject] = (),
    locked: bool = False,
) -> None:
    """Recompute the membership of these computers (those that still exist). ``fresh``:
    computers this transaction inserted and did nothing else to, evaluated as given.
    ``locked``: the caller took the locks (``_lock``) before it wrote."""
    computer_ids = sorted(set(computer_ids))
    if not locked:
        _lock(conn, computer_ids)
    collections = _collections(conn)
    evaluator = Evaluator(collections, {}, {})
    _insert(conn, {(c, s.id) for s in fresh for c in evaluator.member_of(s)})
    for chunk in chunks(computer_ids):
        subjects, approvals = _subjects(conn, SUBJECTS.where(Computer.id.in_(chunk)))
        # Static members and the stored rows, in one round trip.
        static: dict[int, set[int]] = {}
        have: set[tuple[int, int]] = set()
        for is_static, collection_id, computer_id in conn.execute(
            select(literal(True), CollectionMember.collection_id, CollectionMember.computer_id)
            .where(CollectionMember.computer_id.in_(chunk))
            .union_all(
                select(
                    literal(False),
                    CollectionMembership.collection_id,
                    CollectionMembership.computer_id,
                ).where(CollectionMembership.computer_id.in_(chunk))
            )
        ):
            if is_static:
                static.setdefault(collection_id, set()).add(computer_id)
            else:
                have.add((collection_id, computer_id))
        evaluator = Evaluator(collections, static, approvals)
        wanted = {(c, s.id) for s in subjects for c in evaluator.member_of(s)}
        for gone in chunks(sorted(have - wanted)):
            pair = tuple_of(CollectionMembership.collection_id, CollectionMembership.computer_id)
            conn.execute(delete(CollectionMembership).where(pair.in_(gone)))
        _insert(conn, wanted - have)


def rebuild(conn: Connection, names: set[str], locked: bool = False) -> None:
    """Re-evaluate these collections, and those that include or exclude them, for every
    computer."""
    if not locked:
        _lock(conn, everything=True)
    collections = _collections(conn)
    affected = {n for n in Evaluator(collections, {}, {}).affected_by(names) if n in collections}
    if affected:
        ids = [collections[n][0] for n in affected]
        conn.execute(
            delete(CollectionMembership).where(CollectionMembership.collection_id.in_(ids))
        )
        _evaluate(conn, collections, affected, SUBJECTS)


def _evaluate(
    conn: Connection,
    collections: dict[str, tuple[int, dict[str, Any]]],
    names: set[str] | None,
    subjects: Select[Any],
) -> None:
    """Store the membership in ``names`` (None: all) of the computers ``subjects`` selects,
    which have none stored, in keyset pages: the fleet never sits in memory at once."""
    static: dict[int, set[int]] = {}
    for collection_id, computer_id in conn.execute(
        select(CollectionMember.collection_id, CollectionMember.computer_id)
    ):
        static.setdefault(collection_id, set()).add(computer_id)
    last = 0
    while True:
        page = subjects.where(Computer.id > last).order_by(Computer.id).limit(10_000)
        found, approvals = _subjects(conn, page)
        if not found:
            return
        evaluator = Evaluator(collections, static, approvals)
        _insert(conn, {(c, s.id) for s in found for c in evaluator.member_of(s, names)})
        last = found[-1].id


def _insert(conn: Connection, pairs: set[tuple[int, int]]) -> None:
    rows = [{"collection_id": c, "computer_id": m} for c, m in sorted(pairs)]
    for chunk in chunks(rows, 10_000):
        conn.execute(insert(CollectionMembership), chunk)


def heal(conn: Connection) -> int:
    """Compute every computer that has no membership at all; returns how many there were.
    One query when there are none; with many, one pass over them like ``rebuild``."""
    missing = ~exists().where(CollectionMembership.computer_id == Computer.id)
    count = conn.execute(select(func.count()).select_from(Computer).where(missing)).scalar_one()
    if count:
        _lock(conn, everything=True)  # no refresh runs meanwhile
        _evaluate(conn, _collections(conn), None, SUBJECTS.where(missing))
    return int(count)
