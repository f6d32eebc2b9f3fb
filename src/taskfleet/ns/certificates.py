"""Certificates the NS issues to nodes, their revocation, and the revocation list.

Agents get theirs at enrolment (and renew before expiry); task servers send a
request at registration, which approval signs (R1). Revoking a node's
certificates puts their serials on the CRL that ``/api/ca/crl`` publishes and
that every server checks on each call (``server.peers.check_peer``): the NS
against ``Revocations`` here, a task server against the CRL it fetches when a
heartbeat says the list changed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from urllib.parse import urlsplit

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import Forbidden
from taskfleet.ns import audit
from taskfleet.ns.auth import authenticate_agent
from taskfleet.ns.authority import Authority, Issued, key_id, read_csr
from taskfleet.ns.state import NSState, after_commit
from taskfleet.protocol.messages import Approval
from taskfleet.protocol.pki import PeerCertificate
from taskfleet.storage.models import Certificate, TaskServer

log = logging.getLogger("taskfleet.ns")


def authority_of(state: NSState) -> Authority:
    authority = state.authority
    assert authority is not None, "the NS runs with --insecure-http: no CA"
    return authority


async def rotate(state: NSState, actor: str) -> Authority:
    """A new CA, audited (``ca.rotate``): the old ones stay in the bundle and sign it, so
    every node keeps verifying. The caller reloads its TLS context with it."""
    authority = authority_of(state)
    old = authority.fingerprint
    authority.rotate()
    async with state.session() as session:
        audit.record(session, actor, "ca.rotate", "ca", old=old, new=authority.fingerprint)
    return authority


async def issue(
    state: NSState,
    session: AsyncSession,
    kind: str,
    principal: int,
    csr_text: str,
    hosts: Iterable[str] = (),
) -> tuple[Issued, str]:
    """Sign ``csr_text`` for ``kind:principal`` and record it; also the key's id."""
    csr = read_csr(csr_text)
    issued = authority_of(state).issue(csr, kind, principal, state.settings.node_cert_days, hosts)
    session.add(
        Certificate(
            serial=str(issued.serial),
            kind=kind,
            principal=principal,
            issued_at=time.time(),
            not_after=issued.not_after,
            pem=issued.pem,
        )
    )
    return issued, key_id(csr.public_key())


async def for_agent(
    state: NSState, computer_id: int, secret: str, peer: PeerCertificate | None, csr: str
) -> Issued:
    """A new certificate for an enrolled agent: to renew, or for one enrolled before the
    NS had a CA. The key must be the one its certificate names, unless the agent calls
    with its current certificate (a new key) or never had one; a refusal is audited
    (``certificate.refused``) in a transaction of its own and raises ``Forbidden``."""
    wanted = csr_key_id(csr)
    async with state.session() as session:
        computer = await authenticate_agent(session, computer_id, secret)
        holds_certificate = (
            peer is not None
            and peer.kind == "agent"
            and peer.principal == computer.id
            and peer.serial not in state.revocations.serials
        )
        refused = not holds_certificate and computer.key_id not in (None, wanted)
        if not refused:
            issued, key = await issue(state, session, "agent", computer.id, csr)
            computer.key_id = key  # proof of this computer from now on
            return issued
    async with state.session() as session:  # the refusal is kept: its own transaction
        audit.record(
            session,
            f"agent:{computer.id}",
            "certificate.refused",
            computer.name,
            reason="a new key without the current certificate",
        )
    raise Forbidden(
        "this computer's certificate was issued for another key: call with the "
        "current certificate to change keys, or ask an admin for "
        f"'taskfleet computer reset {computer.name}'"
    )


def csr_key_id(csr_text: str) -> str:
    return key_id(read_csr(csr_text).public_key())


async def revoke(
    state: NSState, session: AsyncSession, kind: str, principal: int, reason: str
) -> int:
    """Revoke every certificate of ``kind:principal`` not revoked yet; how many."""
    result = await session.execute(
        update(Certificate)
        .where(
            Certificate.kind == kind,
            Certificate.principal == principal,
            Certificate.revoked_at.is_(None),
        )
        .values(revoked_at=time.time(), reason=reason[:255])
    )
    count = int(getattr(result, "rowcount", 0) or 0)
    if count:

        async def reload() -> None:
            async with state.session() as fresh:
                await state.revocations.load(fresh)

        after_commit(session, reload)
    return count


async def crl_pem(state: NSState, session: AsyncSession) -> tuple[str, int]:
    rows = (
        await session.execute(
            select(Certificate.serial, Certificate.revoked_at).where(
                Certificate.revoked_at.is_not(None)
            )
        )
    ).all()
    revoked = [(int(serial), float(at or 0.0)) for serial, at in rows]
    return authority_of(state).crl_pem(revoked, len(revoked)).decode(), len(revoked)


async def latest(session: AsyncSession, kind: str, principal: int) -> Certificate | None:
    """The newest unrevoked certificate of a node."""
    newest = (
        select(func.max(Certificate.issued_at))
        .where(
            Certificate.kind == kind,
            Certificate.principal == principal,
            Certificate.revoked_at.is_(None),
        )
        .scalar_subquery()
    )
    return (
        await session.execute(
            select(Certificate).where(
                Certificate.kind == kind,
                Certificate.principal == principal,
                Certificate.issued_at == newest,
            )
        )
    ).scalar_one_or_none()


async def for_task_server(
    state: NSState, session: AsyncSession, ts: TaskServer, serving: str
) -> str:
    """The certificate an approved task server should serve with, if it is not the one
    it reports (``serving``): the one approval signed, or a renewal near expiry."""
    if ts.approval != Approval.APPROVED or not ts.enabled or not ts.csr:
        return ""
    current = await latest(session, "taskserver", ts.id)
    now = time.time()
    life = state.settings.node_cert_days * 86400
    if current is None or current.not_after - now < life / 3:
        issued, _ = await issue(state, session, "taskserver", ts.id, ts.csr, hosts_of(ts.url))
        return issued.pem
    return "" if current.serial == serving else current.pem


def hosts_of(url: str) -> list[str]:
    host = urlsplit(url).hostname
    return [host] if host else []


async def approved(state: NSState, session: AsyncSession, ts: TaskServer) -> None:
    """Approval signs the task server's request, in the approval's own transaction."""
    if state.authority is not None and ts.csr:
        await issue(state, session, "taskserver", ts.id, ts.csr, hosts_of(ts.url))
