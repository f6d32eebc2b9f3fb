"""The Task Servers policy (R3, R9) as a value: per collection, an ordered list of task servers.

``ns.drafts`` checks a policy against the database once (when a draft is saved or
applied) and stores its JSON form; what it reads back is made into a ``Policy`` here
without checking again. The editing steps (add, move, reorder, remove) are pure: each
returns the new policy, or raises ``InvalidInput`` with a message a person can act on.
``ns.drafts`` runs them on the draft for the console, the API and the CLI alike.

JSON form: ``{"entries": [{"collection": "Lab", "task_servers": ["ts-1", "ts-2"]}]}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from taskfleet.errors import InvalidInput

DIRECTIONS = ("up", "down")


@dataclass(frozen=True)
class PolicyEntry:
    """One collection's task servers, first choice first."""

    collection: str
    task_servers: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"collection": self.collection, "task_servers": list(self.task_servers)}


@dataclass(frozen=True)
class Policy:
    """The entries in policy order: R3 walks the collections in this order."""

    entries: tuple[PolicyEntry, ...] = ()

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Policy:
        """A stored document, already checked by ``ns.drafts.validate``."""
        return cls(
            tuple(
                PolicyEntry(e["collection"], tuple(e["task_servers"])) for e in document["entries"]
            )
        )

    def to_json(self) -> dict[str, Any]:
        return {"entries": [e.to_json() for e in self.entries]}

    def entry(self, collection: str) -> PolicyEntry:
        for entry in self.entries:
            if entry.collection == collection:
                return entry
        raise InvalidInput(f"the policy has no list for collection {collection!r}")

    def _with(self, entry: PolicyEntry) -> Policy:
        """This policy with ``entry`` in place of its collection's (at the end if new);
        an entry left with no task servers says nothing, so it goes."""
        entries = list(self.entries)
        names = [e.collection for e in entries]
        if entry.collection in names:
            entries[names.index(entry.collection)] = entry
        else:
            entries.append(entry)
        return Policy(tuple(e for e in entries if e.task_servers))


def moved(items: Sequence[Any], index: int, direction: str) -> list[Any]:
    """``items`` with the one at ``index`` one place up or down (unchanged at either end)."""
    if direction not in DIRECTIONS:
        raise InvalidInput("direction must be up or down")
    out = list(items)
    target = index - 1 if direction == "up" else index + 1
    if 0 <= target < len(out):
        out[index], out[target] = out[target], out[index]
    return out


def add(policy: Policy, collection: str, task_server: str) -> Policy:
    """``task_server`` last on ``collection``'s list (a new list if it has none)."""
    if not collection or not task_server:
        raise InvalidInput("choose a collection and a task server to add")
    names = [e.collection for e in policy.entries]
    servers = policy.entry(collection).task_servers if collection in names else ()
    if task_server in servers:
        raise InvalidInput(f"{task_server} is on the list for {collection!r} already")
    return policy._with(PolicyEntry(collection, (*servers, task_server)))


def move(policy: Policy, collection: str, task_server: str, direction: str) -> Policy:
    """``task_server`` one place up or down on ``collection``'s list."""
    servers = policy.entry(collection).task_servers
    if task_server not in servers:
        raise InvalidInput(f"{task_server} is not on the list for {collection!r}")
    new = moved(servers, servers.index(task_server), direction)
    return policy._with(PolicyEntry(collection, tuple(new)))


def order(policy: Policy, collection: str, task_servers: Sequence[str]) -> Policy:
    """``collection``'s list in a new order (as dragging leaves it): the same names."""
    entry = policy.entry(collection)
    if sorted(task_servers) != sorted(entry.task_servers):
        raise InvalidInput("the new order must hold the same task servers; reload the page")
    return policy._with(PolicyEntry(collection, tuple(task_servers)))


def remove(policy: Policy, collection: str, task_server: str) -> Policy:
    """``collection``'s list without ``task_server`` (no change if it is not on it)."""
    servers = policy.entry(collection).task_servers
    return policy._with(PolicyEntry(collection, tuple(s for s in servers if s != task_server)))


def move_collection(policy: Policy, collection: str, direction: str) -> Policy:
    """``collection``'s list one place earlier or later in policy order."""
    names = [e.collection for e in policy.entries]
    if collection not in names:
        raise InvalidInput(f"the policy has no list for collection {collection!r}")
    new = moved(policy.entries, names.index(collection), direction)
    return Policy(tuple(e for e in new if e.task_servers))
