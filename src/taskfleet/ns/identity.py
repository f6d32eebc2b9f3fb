"""Who may claim an identity the NS already holds, and an admin's reset of one.

A computer is known by its hardware id, a task server by its hardware id and its
name. Anyone with an enrolment token can *claim* such an identity: an agent that
enrols with a hardware id the NS knows, a task server that registers with the
hardware id or the name of one it knows. A claim is granted only when

- the claimant proves it holds the identity (``proves``): the identity's current
  credential, presented as ``Authorization: Bearer``, or a certificate request
  signed with the key the identity's certificate was issued for (the CSR's
  signature proves the claimant holds that key; only a holder of the key can use
  the certificate that comes back), or
- an admin reset the identity (``taskfleet computer reset NAME``): the reset drops
  the credential (and key) and sets ``Computer.reset_at``; the next claim is granted
  without proof, once, and clears it.

Otherwise the claim is refused (409) and audited, and the stored identity is left as
it was: its credential keeps working, its task server's URL and approval stay.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import Conflict
from taskfleet.ns import audit, certificates, computers
from taskfleet.ns.identity_replies import ComputerReset
from taskfleet.ns.state import NSState, agents_changed
from taskfleet.protocol.messages import Approval, Refusal
from taskfleet.protocol.transport import (
    Credential,
    PrincipalKind,
    parse_credential,
    secret_matches,
)
from taskfleet.storage.models import Computer, TaskServer

log = logging.getLogger("taskfleet.ns.identity")


@dataclass(frozen=True)
class Presented:
    """What a caller brought besides its message: the credential it presented, if any,
    the id of the key its certificate request was signed with, and the address it
    called from (for the audit log)."""

    credential: Credential | None = None
    peer: str = ""
    key_id: str = ""


@dataclass(frozen=True)
class Held:
    """An identity as stored: what a claimant must show it holds."""

    kind: PrincipalKind
    principal: int
    credential_hash: str | None
    key_id: str | None = None


def presented(request: Request, key_id: str = "") -> Presented:
    """What a caller presents besides its message (an enrolment, a registration): the
    credential in ``Authorization`` if any, unchecked (``proves`` checks it against the
    identity claimed), and its address."""
    header = request.headers.get("authorization", "")
    client = request.client
    return Presented(
        parse_credential(header) if header else None, client.host if client else "", key_id
    )


def proves(presented: Presented, held: Held) -> bool:
    """Does what the caller presented prove it holds ``held``? The one place that decides:
    its credential, or a CSR signed with the key of its certificate (``held.key_id``)."""
    if held.key_id:
        # A key is on record (its certificate names it): only that key proves the
        # identity. A credential alone, stolen with a node's files, would otherwise get
        # the thief a certificate for a key of its own and lock the node out.
        return presented.key_id == held.key_id
    credential = presented.credential
    return bool(
        credential is not None
        and credential.kind == held.kind
        and credential.principal == held.principal
        and held.credential_hash
        and secret_matches(credential.secret, held.credential_hash)
    )


def computer_held(computer: Any) -> Held:
    """A computer's identity (a ``Computer`` or a row with its id, hash and key)."""
    return Held("agent", computer.id, computer.credential_hash, computer.key_id)


def task_server_held(ts: TaskServer) -> Held:
    return Held("taskserver", ts.id, ts.credential_hash, ts.key_id)


def refusal(what: str, name: str) -> Conflict:
    """The 409 for a claim without proof, telling the person what to do."""
    return Conflict(
        f"{what} {name!r} is already enrolled, and this request does not prove it is that "
        f"{what} (it presents no valid credential of it): refused. If it is (reinstalled, "
        f"its state lost), an admin runs 'taskfleet computer reset {name}'; the next "
        "enrolment is then accepted once"
    )


def audit_refusal(
    session: AsyncSession,
    actor: str,
    action: str,
    target: str,
    presented: Presented,
    **detail: Any,
) -> None:
    """The audit entry of a refused claim. No hardware id in it: viewers read the log."""
    audit.record(
        session,
        actor,
        action,
        target,
        peer=presented.peer,
        credential_presented=presented.credential is not None,
        **detail,
    )


async def reset_computer(state: NSState, key: str, actor: str) -> ComputerReset:
    """An admin's reset: the computer's credential and key are dropped (its agent, or
    whoever holds them, is refused from now on) and the next enrolment claiming its
    hardware id is accepted once. A task server's computer: its task server's
    credential and key too, and it goes back to pending (R1) until approved again."""
    async with state.session() as session:
        computer = await computers.find(session, key)
        computer.credential_hash = None
        computer.key_id = None
        computer.reset_at = time.time()
        ts = await session.scalar(select(TaskServer).where(TaskServer.computer_id == computer.id))
        detail: dict[str, Any] = {"computer_id": computer.id}
        if ts is not None:
            ts.credential_hash = ""  # matches no secret
            ts.key_id = None
            detail.update(task_server=ts.name, approval_was=ts.approval)
            ts.approval = Approval.PENDING.value
        # Its certificates go on the CRL: whoever holds the old key is refused in the
        # handshake's aftermath on every server (server.peers).
        reason = f"computer reset by {actor}"
        await certificates.revoke(state, session, "agent", computer.id, reason)
        if ts is not None:
            await certificates.revoke(state, session, "taskserver", ts.id, reason)
        audit.record(session, actor, "computer.reset", computer.name, **detail)
        # After the commit: task servers drop the old credential from their agent maps.
        agents_changed(session)
        return ComputerReset(
            computer.id, computer.name, computer.reset_at, ts.name if ts is not None else None
        )


async def record_refusals(session: AsyncSession, ts_id: int, refusals: Sequence[Refusal]) -> int:
    """Audit what a task server refused its own agents (``agent.forbidden``); only
    refusals about computers assigned to it count. Returns how many were recorded."""
    ts_name = await session.scalar(select(TaskServer.name).where(TaskServer.id == ts_id))
    ids = sorted({r.computer_id for r in refusals})
    rows = await session.execute(
        select(Computer.id, Computer.name).where(
            Computer.id.in_(ids), Computer.task_server_id == ts_id
        )
    )
    names = dict(rows.all())
    for item in refusals:
        if item.computer_id not in names:
            log.warning(
                "task server %s reported a refusal for computer %s, not one of its own",
                ts_name,
                item.computer_id,
            )
            continue
        audit.record(
            session,
            f"agent:{item.computer_id}",
            "agent.forbidden",
            names[item.computer_id],
            tried=_plain(item.action, 64),
            why=_plain(item.why, 500),
            via=f"taskserver:{ts_name}",
        )
    return sum(1 for r in refusals if r.computer_id in names)


def _plain(text: str, limit: int) -> str:
    """A task server's words for the audit log: printable, storable, bounded."""
    return "".join(c for c in text[:limit] if c.isprintable() and not 0xD800 <= ord(c) < 0xE000)
