"""Task servers registering: a task-server token, then the identity they claim (R1).

A task server is known by its computer's hardware id and by its name. A registration
naming either of an existing task server claims that task server (ns.identity): it
must present that task server's current credential, or an admin must have reset it
('taskfleet computer reset NAME'). A claim without either is refused (409) and
audited, and the record is left as it was: its URL, approval and credential.

A new task server lands pending (R1). A proven re-registration keeps its approval
when its URL is unchanged; a new URL, or a claim granted by a reset, goes back to
pending until an admin approves it again, so agents are never sent to an address an
admin has not seen.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import Conflict, InvalidInput, TaskfleetError
from taskfleet.ns import audit, computers, identity, registry, tokens
from taskfleet.ns.identity import Presented
from taskfleet.ns.state import NSState, agents_changed
from taskfleet.protocol.messages import Approval, Registered, Registration
from taskfleet.protocol.transport import Credential, hash_secret, new_secret
from taskfleet.storage.models import Computer, TaskServer


@dataclass
class _Refused(Exception):
    """A refusal to audit in a transaction of its own (the registration's rolls back)."""

    error: TaskfleetError
    target: str
    detail: dict[str, Any] = field(default_factory=dict)


async def register(state: NSState, body: Registration, presented: Presented) -> Registered:
    """Register (or re-register) a task server; refusals are audited."""
    try:
        async with state.session() as session:
            ts, credential, how = await _register(session, body, presented)
            audit.record(
                session,
                f"taskserver:{ts.name}",
                "taskserver.register",
                ts.name,
                url=ts.url,
                approval=ts.approval,
                by=how,
                peer=presented.peer,
            )
            registered = Registered(ts.id, ts.name, str(credential), Approval(ts.approval))
            if how != "new":  # its old credential is void once this commits
                agents_changed(session)
    except _Refused as refused:
        async with state.session() as session:
            identity.audit_refusal(
                session,
                f"taskserver:{body.facts.name[:200]}",
                "taskserver.register-refused",
                refused.target,
                presented,
                **refused.detail,
            )
        raise refused.error from None
    return registered


async def _register(
    session: AsyncSession, body: Registration, presented: Presented
) -> tuple[TaskServer, Credential, str]:
    facts = body.facts
    if not body.url.startswith(("http://", "https://")):
        raise InvalidInput(
            f"task server url {body.url!r} must start with http:// or https://", field="url"
        )
    registry.check_settings(body.client_limit, body.heartbeat_period_s)
    computers.check_facts(facts)
    checked = await tokens.consume(session, body.token, "taskserver")
    if checked.error is not None:
        raise _Refused(
            checked.error,
            checked.label or (f"token {checked.token_id}" if checked.token_id else ""),
            {"reason": checked.reason, "token_id": checked.token_id},
        )
    computer = await session.scalar(
        select(Computer).where(Computer.hardware_id == facts.hardware_id)
    )
    by_name = await session.scalar(select(TaskServer).where(TaskServer.name == facts.name))
    ts = by_name
    if computer is not None:
        ts = await session.scalar(select(TaskServer).where(TaskServer.computer_id == computer.id))
        if ts is None:
            ts = await _claim_agent_computer(session, computer, by_name, facts.name)
        elif by_name is not None and by_name.id != ts.id:
            raise _Refused(
                Conflict(
                    f"the name {facts.name!r} belongs to another task server; register "
                    f"this one under its own name ({ts.name!r})"
                ),
                by_name.name,
                {"reason": "name-taken", "task_server_id": by_name.id},
            )
    secret = new_secret()
    now = time.time()
    if ts is None:  # a new task server, on a new computer
        computer = Computer(hardware_id=facts.hardware_id, enrolled_at=now)
        session.add(computer)
        computers.apply_facts(computer, facts)
        computer.credential_hash = hash_secret(new_secret())  # nobody holds it
        await session.flush()
        ts = TaskServer(computer_id=computer.id, name=facts.name, registered_at=now)
        session.add(ts)
        ts.approval = Approval.PENDING.value  # R1
        how = "new"
    else:
        computer = computer or await session.get(Computer, ts.computer_id)
        assert computer is not None
        how = await _grant(session, ts, computer, presented, secret)
        if how == "reset" or ts.url != body.url:
            ts.approval = Approval.PENDING.value  # R1: an admin approves the new address or holder
        if computer.hardware_id != facts.hardware_id:
            computer.hardware_id = facts.hardware_id  # a reset task server's replacement
        computers.apply_facts(computer, facts)
        computer.last_contact = now
    ts.url = body.url
    ts.credential_hash = hash_secret(secret)
    registry.report(ts, body.client_limit, body.heartbeat_period_s)
    ts.last_heartbeat = now
    await session.flush()
    return ts, Credential("taskserver", ts.id, secret), how


async def _claim_agent_computer(
    session: AsyncSession, computer: Computer, by_name: TaskServer | None, name: str
) -> TaskServer:
    """A task server claiming an enrolled agent's computer: only after a reset."""
    if computer.reset_at is None or by_name is not None:
        raise _Refused(
            identity.refusal("computer", computer.name),
            computer.name,
            {"reason": "identity-claimed", "computer_id": computer.id},
        )
    computer.reset_at = None
    ts = TaskServer(computer_id=computer.id, name=name, registered_at=time.time())
    session.add(ts)
    ts.approval = Approval.PENDING.value
    await session.flush()
    return ts


async def _grant(
    session: AsyncSession,
    ts: TaskServer,
    computer: Computer,
    presented: Presented,
    secret: str,
) -> str:
    """Grant a claim of an existing task server, by proof or by reset, once: the
    conditional UPDATE on what granted it makes a second claim racing this one fail."""
    if identity.proves(presented, identity.task_server_held(ts)):
        result = await session.execute(
            update(TaskServer)
            .where(TaskServer.id == ts.id, TaskServer.credential_hash == ts.credential_hash)
            .values(credential_hash=hash_secret(secret))
            .execution_options(synchronize_session=False)
        )
        how = "proof"
    elif computer.reset_at is not None:
        result = await session.execute(
            update(Computer)
            .where(Computer.id == computer.id, Computer.reset_at.is_not(None))
            .values(reset_at=None)
            .execution_options(synchronize_session=False)
        )
        computer.reset_at = None
        how = "reset"
    else:
        raise _Refused(
            identity.refusal("task server", ts.name),
            ts.name,
            {"reason": "identity-claimed", "task_server_id": ts.id},
        )
    assert isinstance(result, CursorResult)
    if result.rowcount != 1:
        raise _Refused(
            identity.refusal("task server", ts.name),
            ts.name,
            {"reason": "identity-claimed", "why": "claimed meanwhile", "task_server_id": ts.id},
        )
    return how
