"""Collections: named sets of computers (SPEC section 2).

A computer is a member when it is a static member, or matches every dynamic
rule the collection has, or is in an included collection, and is not in an
excluded one. The built-ins are rules too: ``All Computers``, ``Task Servers``
(computers that registered as task servers) and ``Approved Task Servers``.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import Conflict, InvalidInput, NotFound
from taskfleet.storage.models import Collection, CollectionMember, Computer, TaskServer

ALL_COMPUTERS = "All Computers"
TASK_SERVERS = "Task Servers"
APPROVED_TASK_SERVERS = "Approved Task Servers"
BUILTINS = {
    ALL_COMPUTERS: {"builtin": "all"},
    TASK_SERVERS: {"builtin": "task_servers"},
    APPROVED_TASK_SERVERS: {"builtin": "approved_task_servers"},
}
RULE_KEYS = {"name_pattern", "cidr", "os", "fact", "include", "exclude"}


def validate_rules(rules: dict[str, Any]) -> dict[str, Any]:
    unknown = set(rules) - RULE_KEYS
    if unknown:
        raise InvalidInput(
            f"unknown collection rule(s) {sorted(unknown)}; known: {sorted(RULE_KEYS)}"
        )
    out: dict[str, Any] = {}
    for key in ("name_pattern", "os"):
        if rules.get(key):
            if not isinstance(rules[key], str):
                raise InvalidInput(f"rule {key} must be a text pattern such as 'web-*'", field=key)
            out[key] = rules[key]
    for key in ("cidr", "include", "exclude"):
        value = rules.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidInput(f"rule {key} must be a list of texts")
        if value:
            out[key] = value
    for cidr in out.get("cidr", []):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise InvalidInput(
                f"{cidr!r} is not a subnet; write it as 10.1.0.0/16", field="cidr"
            ) from None
    fact = rules.get("fact") or {}
    if not isinstance(fact, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in fact.items()
    ):
        raise InvalidInput("rule fact must map fact names to values, e.g. {'role': 'web'}")
    if fact:
        out["fact"] = fact
    return out


@dataclass
class Membership:
    """Everything needed to evaluate membership of a set of computers."""

    collections: dict[str, Collection]
    static: dict[int, set[int]]  # collection id -> computer ids
    task_servers: dict[int, str]  # computer id -> approval

    def contains(self, name: str, computer: Computer, _stack: tuple[str, ...] = ()) -> bool:
        collection = self.collections.get(name)
        if collection is None or name in _stack:
            return False
        rules = collection.rules or {}
        stack = (*_stack, name)
        for excluded in rules.get("exclude", []):
            if self.contains(excluded, computer, stack):
                return False
        builtin = rules.get("builtin")
        if builtin == "all":
            return True
        if builtin == "task_servers":
            return computer.id in self.task_servers
        if builtin == "approved_task_servers":
            return self.task_servers.get(computer.id) == "approved"
        if computer.id in self.static.get(collection.id, set()):
            return True
        if _matches_rules(rules, computer):
            return True
        return any(self.contains(inc, computer, stack) for inc in rules.get("include", []))

    def collections_of(self, computer: Computer) -> list[str]:
        return sorted(name for name in self.collections if self.contains(name, computer))


def _matches_rules(rules: dict[str, Any], computer: Computer) -> bool:
    conditions = [k for k in ("name_pattern", "cidr", "os", "fact") if rules.get(k)]
    if not conditions:
        return False
    if "name_pattern" in rules and not fnmatch.fnmatch(
        computer.name.lower(), rules["name_pattern"].lower()
    ):
        return False
    if "os" in rules and not fnmatch.fnmatch(computer.os.lower(), rules["os"].lower()):
        return False
    if "cidr" in rules:
        nets = [ipaddress.ip_network(c, strict=False) for c in rules["cidr"]]
        ips = []
        for text in computer.addresses or []:
            try:
                ips.append(ipaddress.ip_interface(text).ip)
            except ValueError:
                continue
        if not any(ip in net for ip in ips for net in nets if ip.version == net.version):
            return False
    facts = computer.facts or {}
    return all(facts.get(k) == v for k, v in (rules.get("fact") or {}).items())


async def load_membership(
    session: AsyncSession, computer_ids: Iterable[int] | None = None
) -> Membership:
    collections = {c.name: c for c in (await session.scalars(select(Collection))).all()}
    query = select(CollectionMember.collection_id, CollectionMember.computer_id)
    if computer_ids is not None:
        query = query.where(CollectionMember.computer_id.in_(list(computer_ids)))
    static: dict[int, set[int]] = {}
    for collection_id, computer_id in (await session.execute(query)).all():
        static.setdefault(collection_id, set()).add(computer_id)
    task_servers = dict(
        (await session.execute(select(TaskServer.computer_id, TaskServer.approval))).all()
    )
    return Membership(collections, static, task_servers)


async def ensure_builtins(session: AsyncSession) -> None:
    existing = set((await session.scalars(select(Collection.name))).all())
    for name, rules in BUILTINS.items():
        if name not in existing:
            session.add(Collection(name=name, builtin=True, rules=rules, created_at=time.time()))


async def get(session: AsyncSession, name: str) -> Collection:
    collection = await session.scalar(select(Collection).where(Collection.name == name))
    if collection is None:
        raise NotFound(f"no collection named {name!r}; 'taskfleet collection list' shows them")
    return collection


async def create(
    session: AsyncSession, name: str, description: str, rules: dict[str, Any]
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
    return collection


async def members(session: AsyncSession, collection: Collection) -> list[Computer]:
    membership = await load_membership(session)
    computers = (await session.scalars(select(Computer).order_by(Computer.name))).all()
    return [c for c in computers if membership.contains(collection.name, c)]


async def set_static(
    session: AsyncSession, collection: Collection, computers: list[Computer], add: bool
) -> None:
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
