"""Collections: named sets of computers (SPEC section 2).

What makes a computer a member (static members, dynamic rules, include/exclude,
the built-ins ``All Computers``, ``Task Servers`` and ``Approved Task Servers``) is
``ns/rules.py``; ``ns/membership.py`` stores the result whenever something changes.
So the questions below are indexed queries on ``collection_membership``: nothing
here loads the fleet to evaluate rules.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import Conflict, InvalidInput, NotFound
from taskfleet.ns import audit, membership
from taskfleet.ns.rules import (
    BUILTIN_ALL,
    BUILTIN_APPROVED_TASK_SERVERS,
    BUILTIN_TASK_SERVERS,
    validate_rules,
)
from taskfleet.ns.state import agents_changed
from taskfleet.storage.models import (
    Collection,
    CollectionMember,
    CollectionMembership,
    Computer,
    TaskServer,
    is_id,
)

ALL_COMPUTERS = "All Computers"
TASK_SERVERS = "Task Servers"
APPROVED_TASK_SERVERS = "Approved Task Servers"
BUILTINS = {
    ALL_COMPUTERS: {"builtin": BUILTIN_ALL},
    TASK_SERVERS: {"builtin": BUILTIN_TASK_SERVERS},
    APPROVED_TASK_SERVERS: {"builtin": BUILTIN_APPROVED_TASK_SERVERS},
}


@dataclass
class Membership:
    """The collections of a set of computers, as stored."""

    of: dict[int, set[str]]  # computer id -> names of the collections it is in
    static: dict[int, set[int]]  # collection id -> computer ids (static members only)
    task_servers: dict[int, str]  # computer id -> approval

    def contains(self, name: str, computer: Computer) -> bool:
        return name in self.of.get(computer.id, ())

    def collections_of(self, computer: Computer) -> list[str]:
        return sorted(self.of.get(computer.id, ()))


async def load_membership(
    session: AsyncSession,
    computer_ids: Iterable[int] | Select[Any] | None = None,
    names: Iterable[str] | None = None,
) -> Membership:
    """Membership of these computers: ids, a query of ids (``select(Computer.id)...``, for
    sets too large to list), or None for the whole fleet; in the collections ``names``
    only (``contains`` is then False for any other), or in all."""
    of: dict[int, set[str]] = {}
    static: dict[int, set[int]] = {}
    collections = select(Collection.id, Collection.name)
    if names is not None:
        collections = collections.where(Collection.name.in_(list(names)))
    name_of = dict((await session.execute(collections)).all())
    stored = select(CollectionMembership.computer_id, CollectionMembership.collection_id)
    if names is not None:
        stored = stored.where(CollectionMembership.collection_id.in_(list(name_of)))
    members = select(CollectionMember.collection_id, CollectionMember.computer_id)
    if isinstance(computer_ids, Select) or computer_ids is None:
        groups: list[Any] = [computer_ids]
    else:
        groups = list(membership.chunks(sorted(set(computer_ids))))
    for group in groups:
        query, static_query = stored, members
        if group is not None:
            query = query.where(CollectionMembership.computer_id.in_(group))
            static_query = static_query.where(CollectionMember.computer_id.in_(group))
        for computer_id, collection_id in (await session.execute(query)).all():
            if collection_id in name_of:  # else created since name_of was read
                of.setdefault(computer_id, set()).add(name_of[collection_id])
        for collection_id, computer_id in (await session.execute(static_query)).all():
            static.setdefault(collection_id, set()).add(computer_id)
    task_servers = dict(
        (await session.execute(select(TaskServer.computer_id, TaskServer.approval))).all()
    )
    return Membership(of, static, task_servers)


class Member(Protocol):
    """A computer as far as a run needs it: a ``Computer`` is one, so is a ``MemberRef``."""

    @property
    def id(self) -> int: ...

    @property
    def task_server_id(self) -> int | None: ...


class MemberRef(NamedTuple):
    id: int
    task_server_id: int | None


def _in(collection: Collection) -> Any:
    return (CollectionMembership.computer_id == Computer.id) & (
        CollectionMembership.collection_id == collection.id
    )


async def members(
    session: AsyncSession, collection: Collection, limit: int | None = None
) -> list[Computer]:
    """The members (the first ``limit`` of them), by name, as full rows, for pages."""
    query = select(Computer).join(CollectionMembership, _in(collection))
    query = query.order_by(Computer.name, Computer.id).limit(limit)
    return list((await session.scalars(query)).all())


async def member_refs(session: AsyncSession, collection: Collection) -> list[MemberRef]:
    """The members' ids and task servers only: what a run fans out to. Far cheaper than
    ``members`` for 100,000 computers (no ORM objects)."""
    query = select(Computer.id, Computer.task_server_id).join(CollectionMembership, _in(collection))
    rows = await session.execute(query.order_by(Computer.id))
    return [MemberRef(computer_id, ts_id) for computer_id, ts_id in rows.all()]


async def counts(session: AsyncSession, collection: Collection | None = None) -> dict[int, int]:
    """Collection id -> number of members, for one collection or all; collections
    without members are left out."""
    query = select(CollectionMembership.collection_id, func.count())
    if collection is not None:
        query = query.where(CollectionMembership.collection_id == collection.id)
    rows = await session.execute(query.group_by(CollectionMembership.collection_id))
    return dict(rows.all())


async def ensure_builtins(session: AsyncSession) -> None:
    """At every NS start: the built-in collections, and the membership of computers that
    have none yet (a database from before stored membership, or bulk-inserted rows)."""
    existing = set((await session.scalars(select(Collection.name))).all())
    for name, rules in BUILTINS.items():
        if name not in existing:
            session.add(Collection(name=name, builtin=True, rules=rules, created_at=time.time()))
    await session.flush()
    await session.run_sync(lambda sync: membership.heal(sync.connection()))


async def by_id(session: AsyncSession, collection_id: int) -> Collection:
    collection = await session.get(Collection, collection_id)
    if collection is None:
        raise NotFound(f"no collection with id {collection_id}; 'taskfleet collection list'")
    return collection


async def get(session: AsyncSession, name: str) -> Collection:
    collection = await session.scalar(select(Collection).where(Collection.name == name))
    if collection is None:
        raise NotFound(f"no collection named {name!r}; 'taskfleet collection list' shows them")
    return collection


async def create(
    session: AsyncSession, name: str, description: str, rules: dict[str, Any], actor: str
) -> Collection:
    name = name.strip()
    if not name or len(name) > 255 or "\x00" in name:
        raise InvalidInput(
            "a collection name must be 1 to 255 characters, without NUL (\\u0000)", field="name"
        )
    if await session.scalar(select(Collection.id).where(Collection.name == name)):
        raise Conflict(f"a collection named {name!r} already exists", field="name")
    rules = validate_rules(rules)
    for other in [*rules.get("include", []), *rules.get("exclude", [])]:
        await get(session, other)
    collection = Collection(name=name, description=description, rules=rules, created_at=time.time())
    session.add(collection)
    await session.flush()
    audit.record(session, actor, "collection.create", collection.name, rules=collection.rules)
    return collection


async def set_static(
    session: AsyncSession, collection: Collection, computers: list[Computer], add: bool, actor: str
) -> None:
    """Add or remove static members, audited; agents' settings may follow membership, so
    task servers refresh their agent maps once this has committed."""
    if collection.builtin:
        raise InvalidInput(f"{collection.name!r} is built in; its members follow from its rule")
    current = set(
        (
            await session.scalars(
                select(CollectionMember.computer_id).where(
                    CollectionMember.collection_id == collection.id
                )
            )
        ).all()
    )
    for computer in computers:
        if add and computer.id not in current:
            session.add(CollectionMember(collection_id=collection.id, computer_id=computer.id))
            current.add(computer.id)
        elif not add and computer.id in current:
            member = await session.get(CollectionMember, (collection.id, computer.id))
            if member is not None:
                await session.delete(member)
            current.discard(computer.id)
    action = "collection.add" if add else "collection.remove"
    audit.record(session, actor, action, collection.name, computers=[c.name for c in computers])
    agents_changed(session)


# --- reading (the console, the API and the CLI alike) -------------------------------


async def find(session: AsyncSession, key: str) -> Collection:
    """By id (the console's links), else by name: a name may hold '/', '?' or '#'."""
    if is_id(key):
        found = await session.get(Collection, int(key))
        if found is not None:
            return found
    return await get(session, key)


async def listed(session: AsyncSession, name: str | None = None) -> list[Collection]:
    """Every collection by name, or the one of this name."""
    query = select(Collection).order_by(Collection.name)
    if name is not None:
        query = query.where(Collection.name == name)
    return list((await session.scalars(query)).all())


async def names(session: AsyncSession) -> list[str]:
    """Every collection's name, sorted: what a form's targets are chosen from."""
    return list((await session.scalars(select(Collection.name).order_by(Collection.name))).all())
