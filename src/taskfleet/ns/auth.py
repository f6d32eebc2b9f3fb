"""Who is calling the NS: an admin, a task server or an agent (identity in one place).

The credential format lives in ``taskfleet.protocol.transport``; here it is
checked against the stored hashes. R1 is enforced here: a task server that
is not approved is refused every call for work, agents or data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import Forbidden, NotApproved, Unauthenticated
from taskfleet.ns import audit
from taskfleet.ns.state import ns_state
from taskfleet.ns.users import Role
from taskfleet.protocol.messages import Approval
from taskfleet.protocol.transport import Credential, parse_credential, secret_matches
from taskfleet.server.peers import check_peer, peer_of
from taskfleet.storage.models import ApiUser, Computer, TaskServer


@dataclass(frozen=True)
class Admin:
    name: str
    role: Role

    def require(self, role: Role) -> None:
        if not self.role.allows(role):
            raise Forbidden(f"{self.name} has role {self.role}; this needs role {role}")


def _credential(request: Request, kind: str) -> Credential:
    header = request.headers.get("authorization", "")
    credential = parse_credential(header) if header else None
    if credential is None:
        raise Unauthenticated(
            "missing or malformed credential; send 'Authorization: Bearer <credential>'"
        )
    if credential.kind != kind:
        raise Forbidden(f"a {credential.kind} credential cannot call this {kind} endpoint")
    return credential


async def _admin(request: Request) -> Admin:
    credential = _credential(request, "admin")
    async with ns_state(request).session() as session:
        user = await session.get(ApiUser, credential.principal)
    if user is None or user.disabled or not secret_matches(credential.secret, user.credential_hash):
        raise Unauthenticated("admin credential not recognised; check the credential file")
    return Admin(user.name, Role(user.role))


async def _viewer(request: Request) -> Admin:
    return await _admin(request)


async def _operator(request: Request) -> Admin:
    admin = await _admin(request)
    admin.require(Role.OPERATOR)
    return admin


async def _administrator(request: Request) -> Admin:
    admin = await _admin(request)
    admin.require(Role.ADMIN)
    return admin


Viewer = Annotated[Admin, Depends(_viewer)]
Operator = Annotated[Admin, Depends(_operator)]
Administrator = Annotated[Admin, Depends(_administrator)]


async def load_task_server(session: AsyncSession, credential: Credential) -> TaskServer:
    ts = await session.get(TaskServer, credential.principal)
    if ts is None or not secret_matches(credential.secret, ts.credential_hash):
        raise Unauthenticated("task server credential not recognised; register again")
    return ts


async def _task_server(request: Request, approved: bool) -> int:
    """The calling task server's id, checked by one statement outside any transaction:
    task servers call for every agent they meet, so this is kept lean."""
    credential = _credential(request, "taskserver")
    query = select(
        TaskServer.name, TaskServer.credential_hash, TaskServer.approval, TaskServer.enabled
    ).where(TaskServer.id == credential.principal)
    async with ns_state(request).engine.connect() as conn:
        if conn.dialect.name == "postgresql":  # no BEGIN and ROLLBACK round trips
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        ts = (await conn.execute(query)).first()
    if ts is None or not secret_matches(credential.secret, ts.credential_hash):
        raise Unauthenticated("task server credential not recognised; register again")
    if not approved:
        return credential.principal
    if ts.approval != Approval.APPROVED:
        raise NotApproved(
            f"task server {ts.name!r} is {ts.approval}, not approved: it may not serve "
            "agents or read data until an admin runs 'taskfleet taskserver approve "
            f"{ts.name}'"
        )
    if not ts.enabled:
        raise NotApproved(f"task server {ts.name!r} is disabled by an admin")
    # Approved, it holds a certificate: over TLS every call presents it (a pending one
    # has none yet and may only send heartbeats, which bring it once approval signs it).
    await _check_peer(request, "taskserver", credential.principal)
    return credential.principal


async def _task_server_any(request: Request) -> int:
    return await _task_server(request, approved=False)


async def _task_server_approved(request: Request) -> int:
    return await _task_server(request, approved=True)


# Any registered task server (heartbeat), and an approved one (everything else, R1).
TaskServerAny = Annotated[int, Depends(_task_server_any)]
TaskServerApproved = Annotated[int, Depends(_task_server_approved)]


async def authenticate_agent(session: AsyncSession, computer_id: int, secret: str) -> Computer:
    computer = await session.get(Computer, computer_id)
    if (
        computer is None
        or computer.credential_hash is None
        or not secret_matches(secret, computer.credential_hash)
    ):
        raise Unauthenticated("agent credential not recognised; enrol the agent again")
    return computer


def _revoked(request: Request) -> frozenset[int]:
    return ns_state(request).revocations.serials


async def _check_peer(request: Request, kind: str, principal: int) -> None:
    """``server.peers.check_peer``; a certificate that names another node, or a revoked
    one, is audited too (a missing one is not: that is a misconfigured node, not a claim)."""
    try:
        check_peer(request.scope, kind, principal, _revoked(request))
    except (Forbidden, Unauthenticated) as exc:
        peer = peer_of(request.scope)
        if peer is not None:
            client = request.client
            async with ns_state(request).session() as session:
                audit.record(
                    session,
                    f"{kind}:{principal}",
                    "certificate.refused",
                    f"{peer.kind}:{peer.principal}",
                    reason=exc.message,
                    serial=str(peer.serial),
                    peer=client.host if client else "",
                )
        raise


async def _agent(request: Request) -> int:
    credential = _credential(request, "agent")
    await _check_peer(request, "agent", credential.principal)
    async with ns_state(request).session() as session:
        computer = await authenticate_agent(session, credential.principal, credential.secret)
    return computer.id


async def agent_credential(request: Request, certificate: bool = True) -> Credential:
    """The agent credential presented, not checked yet: the caller checks it in its own
    transaction (``ns.agent_batches``). Over TLS, the client certificate must be the
    agent's, unless ``certificate`` is False (the call that issues one)."""
    credential = _credential(request, "agent")
    if certificate:
        await _check_peer(request, "agent", credential.principal)
    return credential


AgentComputer = Annotated[int, Depends(_agent)]
