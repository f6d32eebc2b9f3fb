"""Drafts and Apply (R9) of the Task Servers policy and the agent configuration.

Edits change only the draft. ``apply`` copies the draft into a new numbered
version, which is what assignment and agents use from then on.

    policy:        {"entries": [{"collection": "Lab", "task_servers": ["ts-1", "ts-2"]}]}
    agent-config:  {"entries": [{"collection": "Lab", "task_request_interval_min": 5,
                                 "send_status_interval_s": 60,
                                 "output_limit_kib": 1024,
                                 "inventory_interval_h": 24}]}   (list order = priority)

That JSON is what is stored and what the API shows. Each document is checked here once
(``validate``, when a draft is saved or applied), as the typed ``Policy`` (``ns.policy``)
or ``AgentConfig`` (``ns.agent_config``); readers get those (``applied``, ``draft_policy``,
``draft_agent_config``), made once per applied version. The policy's editing steps
(add, move, reorder, remove a task server; move a collection) run here on the draft, so
the console, the API and the CLI edit it alike.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import InvalidInput, NotFound
from taskfleet.ns import agent_config as agent_config_
from taskfleet.ns import audit, policy
from taskfleet.ns import collections as collections_
from taskfleet.ns.agent_config import (
    DEFAULT_INVENTORY_H,
    DEFAULT_OUTPUT_KIB,
    DEFAULT_SSI_S,
    DEFAULT_TASK_REQUEST_INTERVAL_MIN,
    AgentConfig,
    ConfigEntry,
)
from taskfleet.ns.policy import Policy, PolicyEntry
from taskfleet.ns.state import agents_changed
from taskfleet.protocol.fields import MAX_OUTPUT_LIMIT
from taskfleet.storage.models import AppliedVersion, Draft, TaskServer

POLICY = "policy"
AGENT_CONFIG = "agent-config"
KINDS = (POLICY, AGENT_CONFIG)
MAX_ENTRIES = 1000


def _empty() -> dict[str, Any]:
    return {"entries": []}


async def latest(session: AsyncSession, kind: str) -> AppliedVersion | None:
    return await session.scalar(
        select(AppliedVersion)
        .where(AppliedVersion.kind == kind)
        .order_by(AppliedVersion.version.desc())
        .limit(1)
    )


@dataclass(frozen=True)
class Applied:
    """The applied documents as of the newest applied version: shared, never changed."""

    key: tuple[int, float] | None  # the newest applied version's id and time
    documents: dict[str, dict[str, Any]]  # by kind, as stored (JSON)
    policy: Policy
    agent_config: AgentConfig


# Per database (its engine): the applied documents, as of ``key``. Applied versions are
# never changed once written, and each apply adds a row with a larger id, so the newest
# row names the applied documents exactly: a reader that finds the same newest row in
# its own transaction may use what was read before, whichever NS replica applied them.
# (Its time is in the key too, in case a database is made again with the same ids.)
_applied: WeakKeyDictionary[Engine, Applied] = WeakKeyDictionary()


async def applied_documents(session: AsyncSession) -> dict[str, dict[str, Any]]:
    """Every kind's applied document as JSON. Shared by every request: read them, never
    change them (``copy.deepcopy`` first)."""
    return (await applied(session)).documents


async def applied(session: AsyncSession) -> Applied:
    """The applied policy and agent configuration, typed; made once per applied version."""
    newest = (
        await session.execute(
            select(AppliedVersion.id, AppliedVersion.applied_at)
            .order_by(AppliedVersion.id.desc())
            .limit(1)
        )
    ).first()
    key = (newest.id, newest.applied_at) if newest is not None else None
    bind = session.get_bind()
    engine = bind.engine if isinstance(bind, Connection) else bind
    cached = _applied.get(engine)
    if cached is not None and cached.key == key:
        return cached
    found = {kind: _empty() for kind in KINDS}
    if key is not None:
        for kind in KINDS:
            version = await session.scalar(
                select(AppliedVersion)
                .where(AppliedVersion.kind == kind, AppliedVersion.id <= key[0])
                .order_by(AppliedVersion.version.desc())
                .limit(1)
            )
            if version is not None:
                found[kind] = version.document
    made = Applied(
        key, found, Policy.from_json(found[POLICY]), AgentConfig.from_json(found[AGENT_CONFIG])
    )
    _applied[engine] = made
    return made


async def applied_document(session: AsyncSession, kind: str) -> dict[str, Any]:
    """The applied document of this kind: read it, never change it (shared)."""
    return (await applied_documents(session))[kind]


async def draft_document(session: AsyncSession, kind: str) -> dict[str, Any]:
    draft = await session.get(Draft, kind)
    if draft is not None:
        return draft.document
    return copy.deepcopy(await applied_document(session, kind))


async def draft_policy(session: AsyncSession) -> Policy:
    return Policy.from_json(await draft_document(session, POLICY))


async def draft_agent_config(session: AsyncSession) -> AgentConfig:
    return AgentConfig.from_json(await draft_document(session, AGENT_CONFIG))


async def validate(session: AsyncSession, kind: str, document: Any) -> Policy | AgentConfig:
    if not isinstance(document, dict) or not isinstance(document.get("entries"), list):
        raise InvalidInput('a document is {"entries": [...]}')
    entries = document["entries"]
    if len(entries) > MAX_ENTRIES:
        raise InvalidInput(f"at most {MAX_ENTRIES} entries")
    seen: set[str] = set()
    policy_entries: list[PolicyEntry] = []
    config_entries: list[ConfigEntry] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("collection"), str):
            raise InvalidInput(f"entry {i + 1}: needs a 'collection' name")
        name = entry["collection"]
        if name in seen:
            raise InvalidInput(f"collection {name!r} appears twice; merge the entries")
        seen.add(name)
        await collections_.get(session, name)
        if kind == POLICY:
            policy_entries.append(await _policy_entry(session, name, entry))
        else:
            config_entries.append(_config_entry(name, entry))
    if kind == POLICY:
        return Policy(tuple(policy_entries))
    return AgentConfig(tuple(config_entries))


async def _policy_entry(session: AsyncSession, name: str, entry: dict[str, Any]) -> PolicyEntry:
    servers = entry.get("task_servers")
    if not isinstance(servers, list) or not all(isinstance(s, str) for s in servers):
        raise InvalidInput(f"{name!r}: task_servers must be a list of task server names")
    if len(set(servers)) != len(servers):
        raise InvalidInput(f"{name!r}: a task server is listed twice")
    known = set((await session.scalars(select(TaskServer.name))).all())
    for ts in servers:
        if ts not in known:
            raise NotFound(f"{name!r}: no task server named {ts!r}")
    return PolicyEntry(name, tuple(servers))


def _number(entry: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(f"{entry['collection']!r}: {key} must be a number", field=key)
    if not low <= value <= high:
        raise InvalidInput(
            f"{entry['collection']!r}: {key} must be between {low:g} and {high:g}", field=key
        )
    return float(value)


def _config_entry(name: str, entry: dict[str, Any]) -> ConfigEntry:
    return ConfigEntry(
        collection=name,
        task_request_interval_min=_number(
            entry, "task_request_interval_min", DEFAULT_TASK_REQUEST_INTERVAL_MIN, 0.01, 1440
        ),
        send_status_interval_s=_number(entry, "send_status_interval_s", DEFAULT_SSI_S, 0.2, 86400),
        # Script output kept per instance (protocol.fields): 4 KiB to 4 MiB.
        output_limit_kib=int(
            _number(entry, "output_limit_kib", DEFAULT_OUTPUT_KIB, 4, MAX_OUTPUT_LIMIT // 1024)
        ),
        inventory_interval_h=_number(
            entry, "inventory_interval_h", DEFAULT_INVENTORY_H, 0.01, 24 * 365
        ),
    )


async def save_draft(session: AsyncSession, kind: str, document: Any, actor: str) -> dict[str, Any]:
    document = (await validate(session, kind, document)).to_json()
    draft = await session.get(Draft, kind)
    if draft is None:
        draft = Draft(kind=kind, document=document, updated_at=time.time(), updated_by=actor)
        session.add(draft)
    draft.document = document
    draft.updated_at = time.time()
    draft.updated_by = actor
    audit.record(session, actor, f"{kind}.draft", kind, document=document)
    return draft.document


async def set_entry(
    session: AsyncSession,
    kind: str,
    entry: dict[str, Any],
    position: int | None,
    actor: str,
) -> dict[str, Any]:
    """Replace (or add) the draft entry for one collection; position is 1-based."""
    if not isinstance(entry.get("collection"), str):
        raise InvalidInput("the entry needs a 'collection' name")
    entries = list((await draft_document(session, kind))["entries"])
    index = next((i for i, e in enumerate(entries) if e["collection"] == entry["collection"]), None)
    if index is not None:
        entries.pop(index)
    if position is None:
        position = index + 1 if index is not None else len(entries) + 1
    entries.insert(max(0, min(position - 1, len(entries))), entry)
    return await save_draft(session, kind, {"entries": entries}, actor)


async def remove_entry(session: AsyncSession, kind: str, collection: str, actor: str) -> None:
    entries = (await draft_document(session, kind))["entries"]
    kept = [e for e in entries if e["collection"] != collection]
    if len(kept) == len(entries):
        raise NotFound(f"the {kind} draft has no entry for {collection!r}")
    await save_draft(session, kind, {"entries": kept}, actor)


async def edit_policy(
    session: AsyncSession, change: Callable[[Policy], Policy], actor: str
) -> dict[str, Any]:
    """Save the draft policy as ``change`` leaves it (checked again, as any draft is)."""
    edited = change(await draft_policy(session))
    return await save_draft(session, POLICY, edited.to_json(), actor)


async def add_task_server(
    session: AsyncSession, collection: str, task_server: str, actor: str
) -> dict[str, Any]:
    """Put ``task_server`` last on ``collection``'s list in the draft policy."""
    return await edit_policy(session, lambda p: policy.add(p, collection, task_server), actor)


async def move_task_server(
    session: AsyncSession, collection: str, task_server: str, direction: str, actor: str
) -> dict[str, Any]:
    """Move ``task_server`` one place up or down on ``collection``'s list."""
    return await edit_policy(
        session, lambda p: policy.move(p, collection, task_server, direction), actor
    )


async def order_task_servers(
    session: AsyncSession, collection: str, task_servers: list[str], actor: str
) -> dict[str, Any]:
    """``collection``'s list in a new order: the same task servers."""
    return await edit_policy(session, lambda p: policy.order(p, collection, task_servers), actor)


async def remove_task_server(
    session: AsyncSession, collection: str, task_server: str, actor: str
) -> dict[str, Any]:
    """Take ``task_server`` off ``collection``'s list (an emptied list goes)."""
    return await edit_policy(session, lambda p: policy.remove(p, collection, task_server), actor)


async def move_entry(
    session: AsyncSession, kind: str, collection: str, direction: str, actor: str
) -> dict[str, Any]:
    """Move ``collection``'s entry one place up or down: policy order, or priority."""
    if kind == POLICY:
        change = policy.move_collection(await draft_policy(session), collection, direction)
        return await save_draft(session, kind, change.to_json(), actor)
    moved = agent_config_.move(await draft_agent_config(session), collection, direction)
    return await save_draft(session, kind, moved.to_json(), actor)


async def apply(session: AsyncSession, kind: str, actor: str) -> AppliedVersion:
    document = (await validate(session, kind, await draft_document(session, kind))).to_json()
    number = (
        await session.scalar(
            select(func.max(AppliedVersion.version)).where(AppliedVersion.kind == kind)
        )
        or 0
    ) + 1
    version = AppliedVersion(
        kind=kind, version=number, document=document, applied_at=time.time(), applied_by=actor
    )
    session.add(version)
    draft = await session.get(Draft, kind)
    if draft is not None:
        await session.delete(draft)
    audit.record(session, actor, f"{kind}.apply", kind, version=number, document=document)
    agents_changed(session)  # task servers refresh their agents' settings once committed
    await session.flush()
    return version


async def discard_draft(session: AsyncSession, kind: str, actor: str) -> None:
    draft = await session.get(Draft, kind)
    if draft is not None:
        await session.delete(draft)
        audit.record(session, actor, f"{kind}.discard", kind)


async def versions(session: AsyncSession, kind: str) -> list[AppliedVersion]:
    rows = await session.scalars(
        select(AppliedVersion).where(AppliedVersion.kind == kind).order_by(AppliedVersion.version)
    )
    return list(rows.all())


async def reapply(session: AsyncSession, kind: str, number: int, actor: str) -> AppliedVersion:
    """Make an older version effective again, as a new numbered version (R9)."""
    old = await session.scalar(
        select(AppliedVersion).where(AppliedVersion.kind == kind, AppliedVersion.version == number)
    )
    if old is None:
        raise NotFound(f"no applied {kind} version {number}")
    await save_draft(session, kind, old.document, actor)
    return await apply(session, kind, actor)


async def unapplied(session: AsyncSession, kind: str) -> bool:
    draft = await session.get(Draft, kind)
    return draft is not None and draft.document != await applied_document(session, kind)
