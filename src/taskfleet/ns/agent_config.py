"""The agent configuration (R5, R9) as a value: intervals per collection, in priority order.

A computer in several collections takes the first entry, in this order, of one it is in;
one in none takes the defaults. ``ns.drafts`` checks a configuration against the
database once (when a draft is saved or applied) and stores its JSON form; what it
reads back is made into an ``AgentConfig`` here without checking again.

JSON form: ``{"entries": [{"collection": "Lab", "task_request_interval_min": 5,
"send_status_interval_s": 60, "output_limit_kib": 1024, "inventory_interval_h": 24}]}``.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from typing import Any

from taskfleet.errors import InvalidInput
from taskfleet.ns.collections import Membership
from taskfleet.ns.policy import moved
from taskfleet.protocol.fields import DEFAULT_OUTPUT_LIMIT
from taskfleet.protocol.messages import AgentSettings
from taskfleet.storage.models import Computer

DEFAULT_TASK_REQUEST_INTERVAL_MIN = 5.0
DEFAULT_SSI_S = 60.0
DEFAULT_OUTPUT_KIB = DEFAULT_OUTPUT_LIMIT // 1024
DEFAULT_INVENTORY_H = 24.0  # how often agents send their inventory (agent.inventory)


@dataclass(frozen=True)
class ConfigEntry:
    """One collection's intervals."""

    collection: str
    task_request_interval_min: float = DEFAULT_TASK_REQUEST_INTERVAL_MIN
    send_status_interval_s: float = DEFAULT_SSI_S
    output_limit_kib: int = DEFAULT_OUTPUT_KIB  # script output kept per instance
    inventory_interval_h: float = DEFAULT_INVENTORY_H

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> ConfigEntry:
        # Entries applied before a setting existed lack it: they take its default.
        return cls(
            entry["collection"],
            float(entry["task_request_interval_min"]),
            float(entry["send_status_interval_s"]),
            int(entry.get("output_limit_kib", DEFAULT_OUTPUT_KIB)),
            float(entry.get("inventory_interval_h", DEFAULT_INVENTORY_H)),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "task_request_interval_min": self.task_request_interval_min,
            "send_status_interval_s": self.send_status_interval_s,
            "output_limit_kib": self.output_limit_kib,
            "inventory_interval_h": self.inventory_interval_h,
        }

    def settings(self) -> AgentSettings:
        return AgentSettings(
            task_request_interval_s=self.task_request_interval_min * 60.0,
            send_status_interval_s=self.send_status_interval_s,
            output_limit_bytes=self.output_limit_kib * 1024,
            inventory_interval_s=self.inventory_interval_h * 3600,
        )


@dataclass(frozen=True)
class AgentConfig:
    entries: tuple[ConfigEntry, ...] = ()

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> AgentConfig:
        """A stored document, already checked by ``ns.drafts.validate``."""
        return cls(tuple(ConfigEntry.from_json(e) for e in document["entries"]))

    def to_json(self) -> dict[str, Any]:
        return {"entries": [e.to_json() for e in self.entries]}

    def entry_in(self, collections: Container[str]) -> ConfigEntry | None:
        """The first entry, in priority order, of one of these collections."""
        for entry in self.entries:
            if entry.collection in collections:
                return entry
        return None

    def entry_for(self, membership: Membership, computer: Computer) -> ConfigEntry | None:
        """R5: the first entry, in priority order, of a collection the computer is in."""
        return self.entry_in(membership.of.get(computer.id, set()))

    def settings_in(self, collections: Container[str]) -> AgentSettings:
        """R5: the agent settings of a computer in these collections."""
        entry = self.entry_in(collections)
        if entry is None:
            return AgentSettings(DEFAULT_TASK_REQUEST_INTERVAL_MIN * 60.0, DEFAULT_SSI_S)
        return entry.settings()

    def settings_for(self, membership: Membership, computer: Computer) -> AgentSettings:
        return self.settings_in(membership.of.get(computer.id, set()))


def move(config: AgentConfig, collection: str, direction: str) -> AgentConfig:
    """``collection``'s entry one place higher or lower in priority."""
    names = [e.collection for e in config.entries]
    if collection not in names or direction not in ("up", "down"):
        raise InvalidInput(f"cannot move {collection!r} {direction}")
    return AgentConfig(tuple(moved(config.entries, names.index(collection), direction)))


def remove(config: AgentConfig, collection: str) -> AgentConfig:
    """The configuration without ``collection``'s entry (no change if it has none)."""
    return AgentConfig(tuple(e for e in config.entries if e.collection != collection))
