"""The task-server registry: registration, approval (R1), heartbeats and availability (R2)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import InvalidInput, NotFound
from taskfleet.ns import audit, computers, tokens
from taskfleet.ns.state import NSState
from taskfleet.protocol.messages import Facts
from taskfleet.protocol.transport import Credential, hash_secret, new_secret
from taskfleet.storage.models import Computer, TaskServer, is_id

STALE_AFTER_PERIODS = 3  # R2
DEFAULT_CLIENT_LIMIT = 5000


def availability(ts: TaskServer, now: float | None = None) -> tuple[bool, str]:
    """R2: approved, enabled and a heartbeat within 3 heartbeat periods."""
    now = time.time() if now is None else now
    if ts.approval != "approved":
        return False, f"{ts.approval}, not approved"
    if not ts.enabled:
        return False, "disabled"
    if ts.last_heartbeat is None:
        return False, "no heartbeat yet"
    age = now - ts.last_heartbeat
    if age > STALE_AFTER_PERIODS * ts.heartbeat_period_s:
        return False, f"heartbeat stale ({age:.0f}s old)"
    return True, ""


async def register(
    session: AsyncSession,
    token: str,
    facts: Facts,
    url: str,
    client_limit: int,
    heartbeat_period_s: float,
) -> tuple[TaskServer, Credential]:
    if not url.startswith(("http://", "https://")):
        raise InvalidInput(f"task server url {url!r} must start with http:// or https://")
    if not 1 <= client_limit <= 1_000_000:
        raise InvalidInput("client_limit must be between 1 and 1,000,000")
    if not 0.1 <= heartbeat_period_s <= 3600:
        raise InvalidInput("heartbeat_period_s must be between 0.1 and 3600")
    await tokens.consume(session, token, "taskserver")
    computer, _ = await computers.upsert(session, facts)
    secret = new_secret()
    ts = await session.scalar(select(TaskServer).where(TaskServer.computer_id == computer.id))
    now = time.time()
    if ts is None:
        name = await _free_name(session, facts.name)
        ts = TaskServer(computer_id=computer.id, name=name, registered_at=now)
        session.add(ts)
    # A (re-)registration always starts pending: whoever holds a token must not be able
    # to take over an approved task server's identity (R1).
    ts.approval = "pending"
    ts.url = url
    ts.credential_hash = hash_secret(secret)
    ts.client_limit = client_limit
    ts.heartbeat_period_s = heartbeat_period_s
    ts.last_heartbeat = now
    await session.flush()
    return ts, Credential("taskserver", ts.id, secret)


async def _free_name(session: AsyncSession, wanted: str) -> str:
    name, n = wanted, 1
    while await session.scalar(select(TaskServer.id).where(TaskServer.name == name)):
        n += 1
        name = f"{wanted}-{n}"
    return name


async def find(session: AsyncSession, key: str) -> TaskServer:
    query = select(TaskServer).where(TaskServer.name == key)
    if is_id(key):
        query = select(TaskServer).where(TaskServer.id == int(key))
    ts = await session.scalar(query)
    if ts is None:
        raise NotFound(f"no task server {key!r}; 'taskfleet taskserver list' shows them")
    return ts


async def set_approval(state: NSState, key: str, approval: str, actor: str) -> TaskServer:
    """Approve or revoke (R1), audited; task servers learn it at their next call."""
    async with state.session() as session:
        ts = await find(session, key)
        ts.approval = approval
        action = "taskserver.approve" if approval == "approved" else "taskserver.revoke"
        audit.record(session, actor, action, ts.name)
    state.agents_changed()  # after the commit: a poll in between must not cache the old state
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
    heartbeat_period_s: float
    agents: int
    client_limit: int
    addresses: list[str]


async def list_all(session: AsyncSession) -> list[TaskServerView]:
    load = await loads(session)
    rows = await session.execute(
        select(TaskServer, Computer).join(Computer, Computer.id == TaskServer.computer_id)
    )
    out = []
    now = time.time()
    for ts, computer in rows.all():
        ok, why = availability(ts, now)
        out.append(
            TaskServerView(
                id=ts.id,
                name=ts.name,
                url=ts.url,
                approval=ts.approval,
                enabled=ts.enabled,
                available=ok,
                why_unavailable=why,
                last_heartbeat=ts.last_heartbeat,
                heartbeat_period_s=ts.heartbeat_period_s,
                agents=load.get(ts.id, 0),
                client_limit=ts.client_limit,
                addresses=list(computer.addresses or []),
            )
        )
    return sorted(out, key=lambda v: v.name)
