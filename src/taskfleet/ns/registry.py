"""The task-server registry: approval (R1), heartbeats and availability (R2); settings.

Registration, with its identity checks, is ``ns.registration``."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import InvalidInput, NotFound
from taskfleet.ns import audit, certificates
from taskfleet.ns.state import NSState, agents_changed
from taskfleet.protocol.messages import Approval
from taskfleet.storage.models import Computer, TaskServer, is_id

STALE_AFTER_PERIODS = 3  # R2
DEFAULT_CLIENT_LIMIT = 5000
MAX_CLIENT_LIMIT = 1_000_000
HEARTBEAT_RANGE_S = (0.1, 3600.0)
# What an admin may set on a task server ('taskfleet taskserver set'); None clears it.
SETTINGS = ("client_limit", "heartbeat_period_s")


def availability(ts: TaskServer, now: float | None = None) -> tuple[bool, str]:
    """R2: approved, enabled and a heartbeat within 3 heartbeat periods."""
    now = time.time() if now is None else now
    if ts.approval != Approval.APPROVED:
        return False, f"{ts.approval}, not approved"
    if not ts.enabled:
        return False, "disabled"
    if ts.last_heartbeat is None:
        return False, "no heartbeat yet"
    age = now - ts.last_heartbeat
    if age > STALE_AFTER_PERIODS * ts.heartbeat_period_s:
        return False, f"heartbeat stale ({age:.0f}s old)"
    return True, ""


def check_settings(client_limit: int | None, heartbeat_period_s: float | None) -> None:
    if client_limit is not None and not 1 <= client_limit <= MAX_CLIENT_LIMIT:
        raise InvalidInput(
            f"client_limit must be between 1 and {MAX_CLIENT_LIMIT:,}", field="client_limit"
        )
    low, high = HEARTBEAT_RANGE_S
    if heartbeat_period_s is not None and not low <= heartbeat_period_s <= high:
        raise InvalidInput(
            f"heartbeat_period_s must be between {low} and {high:.0f} seconds",
            field="heartbeat_period_s",
        )


def report(
    ts: TaskServer, client_limit: int | None, heartbeat_period_s: float | None
) -> dict[str, float]:
    """What a task server says of itself, at registration and in every heartbeat, so its
    --client-limit and --heartbeat take effect when it restarts with new values. An
    admin's setting still wins (``configure``). Returns what changed, for the audit log."""
    check_settings(client_limit, heartbeat_period_s)
    changed: dict[str, float] = {}
    if client_limit is not None and client_limit != ts.reported_client_limit:
        ts.reported_client_limit = changed["client_limit"] = client_limit
    if heartbeat_period_s is not None and heartbeat_period_s != ts.reported_heartbeat_period_s:
        ts.reported_heartbeat_period_s = changed["heartbeat_period_s"] = heartbeat_period_s
    _in_effect(ts)
    return changed


def heartbeat_report(
    session: AsyncSession,
    ts: TaskServer,
    client_limit: int | None,
    heartbeat_period_s: float | None,
) -> None:
    """``report`` from a heartbeat: a task server that restarted with new values says so
    in the audit log (``taskserver.report``); registration audits its own."""
    changed = report(ts, client_limit, heartbeat_period_s)
    if changed:
        audit.record(session, f"taskserver:{ts.name}", "taskserver.report", ts.name, **changed)


def _in_effect(ts: TaskServer) -> None:
    admin_limit, admin_period = ts.admin_client_limit, ts.admin_heartbeat_period_s
    ts.client_limit = ts.reported_client_limit if admin_limit is None else admin_limit
    ts.heartbeat_period_s = ts.reported_heartbeat_period_s if admin_period is None else admin_period


async def configure(
    state: NSState, key: str, changes: Mapping[str, float | None], actor: str
) -> dict[str, Any]:
    """An admin sets (a number) or clears (None) a task server's client limit or heartbeat
    period, audited. The admin's value wins over what the task server reports until it is
    cleared; lowering the limit below its load moves no agent (R4), it only takes no more."""
    if not changes or set(changes) - set(SETTINGS):
        raise InvalidInput(
            f"give one or both of {' and '.join(SETTINGS)}: a number, or null to clear it"
        )
    limit, period = changes.get("client_limit"), changes.get("heartbeat_period_s")
    if limit is not None and not isinstance(limit, int):
        raise InvalidInput("client_limit must be a whole number", field="client_limit")
    check_settings(limit, period)
    async with state.session() as session:
        ts = await find(session, key)
        if "client_limit" in changes:
            ts.admin_client_limit = limit
        if "heartbeat_period_s" in changes:
            ts.admin_heartbeat_period_s = period
        _in_effect(ts)
        audit.record(session, actor, "taskserver.set", ts.name, **changes)
        await session.flush()
        out = asdict(await view(session, ts))
    beats = ts.reported_heartbeat_period_s
    if beats >= STALE_AFTER_PERIODS * ts.heartbeat_period_s:
        out["warning"] = (
            f"{ts.name} heartbeats every {beats:g}s, so with {ts.heartbeat_period_s:g}s it "
            f"will look stale (R2); set more than {beats / STALE_AFTER_PERIODS:.3g}s, or start it "
            "with a shorter --heartbeat"
        )
    return out


async def find(session: AsyncSession, key: str) -> TaskServer:
    query = select(TaskServer).where(TaskServer.name == key)
    if is_id(key):
        query = select(TaskServer).where(TaskServer.id == int(key))
    ts = await session.scalar(query)
    if ts is None:
        raise NotFound(f"no task server {key!r}; 'taskfleet taskserver list' shows them")
    return ts


async def set_approval(state: NSState, key: str, approval: Approval, actor: str) -> TaskServer:
    """Approve or revoke (R1), audited; task servers learn it at their next call."""
    async with state.session() as session:
        ts = await find(session, key)
        ts.approval = approval.value
        action = "taskserver.approve" if approval is Approval.APPROVED else "taskserver.revoke"
        audit.record(session, actor, action, ts.name)
        # The same audited step signs its certificate, or revokes it (the CRL).
        if approval is Approval.APPROVED:
            await certificates.approved(state, session, ts)
        else:
            await certificates.revoke(state, session, "taskserver", ts.id, f"{action} by {actor}")
        agents_changed(session)  # after the commit: a poll in between must not cache the old state
    return ts


async def loads(session: AsyncSession) -> dict[int, int]:
    rows = await session.execute(
        select(Computer.task_server_id, func.count())
        .where(Computer.task_server_id.is_not(None))
        .group_by(Computer.task_server_id)
    )
    return {ts_id: n for ts_id, n in rows.all() if ts_id is not None}


@dataclass
class TaskServerView:
    id: int
    name: str
    url: str
    approval: str
    enabled: bool
    available: bool
    why_unavailable: str
    last_heartbeat: float | None
    heartbeat_period_s: float  # in effect: the admin's setting, else the reported one
    agents: int
    client_limit: int  # in effect, as heartbeat_period_s
    addresses: list[str]
    reported_client_limit: int  # what the task server says (its --client-limit)
    reported_heartbeat_period_s: float
    admin_client_limit: int | None  # set by an admin; wins until cleared
    admin_heartbeat_period_s: float | None
    # Status events it set aside in its dead-letter file, and why the latest was (R12).
    dead_letters: int = 0
    dead_letter_reason: str | None = None


def _view(ts: TaskServer, computer: Computer, agents: int, now: float) -> TaskServerView:
    ok, why = availability(ts, now)
    return TaskServerView(
        id=ts.id,
        name=ts.name,
        url=ts.url,
        approval=ts.approval,
        enabled=ts.enabled,
        available=ok,
        why_unavailable=why,
        last_heartbeat=ts.last_heartbeat,
        heartbeat_period_s=ts.heartbeat_period_s,
        agents=agents,
        client_limit=ts.client_limit,
        addresses=list(computer.addresses or []),
        reported_client_limit=ts.reported_client_limit,
        reported_heartbeat_period_s=ts.reported_heartbeat_period_s,
        admin_client_limit=ts.admin_client_limit,
        admin_heartbeat_period_s=ts.admin_heartbeat_period_s,
        dead_letters=ts.dead_letters or 0,
        dead_letter_reason=ts.dead_letter_reason,
    )


async def view(session: AsyncSession, ts: TaskServer) -> TaskServerView:
    computer = await session.get(Computer, ts.computer_id)
    assert computer is not None
    agents = await session.scalar(
        select(func.count()).select_from(Computer).where(Computer.task_server_id == ts.id)
    )
    return _view(ts, computer, agents or 0, time.time())


async def list_all(session: AsyncSession) -> list[TaskServerView]:
    load = await loads(session)
    rows = await session.execute(
        select(TaskServer, Computer).join(Computer, Computer.id == TaskServer.computer_id)
    )
    now = time.time()
    out = [_view(ts, computer, load.get(ts.id, 0), now) for ts, computer in rows.all()]
    return sorted(out, key=lambda v: v.name)
