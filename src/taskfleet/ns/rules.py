"""Collection rules (SPEC section 2): what a rule may say, and which computers it takes in.

Pure: no I/O. This is the one place the semantics live. ``ns/membership.py`` runs
the ``Evaluator`` whenever a computer, a task server, a static member or a
collection changes and stores the result, so that everyone else reads membership
from the database and never evaluates rules over the fleet.

A computer is a member of a collection when it is in none of the excluded
collections, and it is a static member, or matches every dynamic rule the
collection has (name pattern, subnet, OS, fact equals value), or is in an included
collection. The built-ins are rules too: ``All Computers``, ``Task Servers``
(computers that registered as task servers) and ``Approved Task Servers``.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from taskfleet.errors import InvalidInput
from taskfleet.ns.assignment_rules import Interface, Network, interfaces, networks, within
from taskfleet.protocol.messages import Approval

RULE_KEYS = {"name_pattern", "cidr", "os", "fact", "include", "exclude"}
BUILTIN_ALL = "all"
BUILTIN_TASK_SERVERS = "task_servers"
BUILTIN_APPROVED_TASK_SERVERS = "approved_task_servers"


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


@dataclass(frozen=True)
class Subject:
    """A computer as the rules see it."""

    id: int
    name: str
    os: str
    addresses: tuple[str, ...] = ()
    facts: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def interfaces(self) -> list[Interface]:
        # Parsed once per computer, however many subnet rules there are.
        return interfaces(self.addresses)


def _pattern(text: str) -> Callable[[str], bool]:
    # fnmatch on lower-cased text on both sides, compiled once per collection.
    match = re.compile(fnmatch.translate(text.lower())).match
    return lambda value: match(value.lower()) is not None


class Matcher:
    """One collection's dynamic rules (name pattern, subnet, OS, fact), compiled."""

    def __init__(self, rules: dict[str, Any]) -> None:
        self.name = _pattern(rules["name_pattern"]) if rules.get("name_pattern") else None
        self.os = _pattern(rules["os"]) if rules.get("os") else None
        self.nets: list[Network] | None = networks(rules["cidr"]) if rules.get("cidr") else None
        self.fact: dict[str, Any] = dict(rules.get("fact") or {})
        self.dynamic = any(x is not None for x in (self.name, self.os, self.nets)) or bool(
            self.fact
        )

    def matches(self, computer: Subject) -> bool:
        """Every dynamic rule holds; False when the collection has none."""
        if not self.dynamic:
            return False
        if self.name is not None and not self.name(computer.name):
            return False
        if self.os is not None and not self.os(computer.os):
            return False
        # Loopback and link-local addresses every host has count for no subnet, as in
        # assignment's proximity and sites.
        if self.nets is not None and not within(computer.interfaces, self.nets):
            return False
        facts = computer.facts or {}
        return all(facts.get(k) == v for k, v in self.fact.items())


@dataclass
class Evaluator:
    """Evaluates every collection for the computers whose static memberships and task
    server approvals it was given."""

    collections: dict[str, tuple[int, dict[str, Any]]]  # name -> (id, rules)
    static: dict[int, set[int]]  # collection id -> computer ids
    task_servers: dict[int, str]  # computer id -> approval
    _matchers: dict[str, Matcher] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self._matchers = {name: Matcher(rules) for name, (_, rules) in self.collections.items()}

    def contains(
        self,
        name: str,
        computer: Subject,
        _stack: tuple[str, ...] = (),
        _matched: dict[str, bool] | None = None,
    ) -> bool:
        """``_matched``: results of the dynamic rules for this computer so far, so a
        collection included by many is matched once."""
        found = self.collections.get(name)
        if found is None or name in _stack:
            return False
        collection_id, rules = found
        stack = (*_stack, name)
        matched = {} if _matched is None else _matched
        for excluded in rules.get("exclude", []):
            if self.contains(excluded, computer, stack, matched):
                return False
        builtin = rules.get("builtin")
        if builtin == BUILTIN_ALL:
            return True
        if builtin == BUILTIN_TASK_SERVERS:
            return computer.id in self.task_servers
        if builtin == BUILTIN_APPROVED_TASK_SERVERS:
            return self.task_servers.get(computer.id) == Approval.APPROVED
        if computer.id in self.static.get(collection_id, set()):
            return True
        if name not in matched:
            matched[name] = self._matchers[name].matches(computer)
        if matched[name]:
            return True
        return any(self.contains(inc, computer, stack, matched) for inc in rules.get("include", []))

    def member_of(self, computer: Subject, names: set[str] | None = None) -> set[int]:
        """Ids of the collections (of ``names``, or all) that hold ``computer``."""
        matched: dict[str, bool] = {}
        return {
            self.collections[name][0]
            for name in (self.collections if names is None else names)
            if self.contains(name, computer, (), matched)
        }

    def affected_by(self, names: set[str]) -> set[str]:
        """``names`` and every collection that includes or excludes one of them, however
        indirectly: what may change when those collections change."""
        out = set(names)
        while True:
            more = {
                name
                for name, (_, rules) in self.collections.items()
                if name not in out and out & {*rules.get("include", []), *rules.get("exclude", [])}
            }
            if not more:
                return out
            out |= more
