"""Agents enrolling, in batches: token checks, identity claims, new computers in bulk.

After a power cut or a mass install thousands of agents enrol within seconds, so a
batch costs a few statements: one token query, one query for the hardware ids
already known, one conditional UPDATE per limited token, one INSERT of the new
computers, their membership and audit in bulk.

An enrolment naming a hardware id the NS knows claims that computer (ns.identity):
granted with proof of its identity or after an admin's reset, refused (409, audited)
otherwise. The grant is a conditional UPDATE on what made it (the credential that
proved it, or the reset mark), so two claims racing for one computer get it once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import InvalidInput, TaskfleetError
from taskfleet.ns import audit, computers, identity, membership, tokens
from taskfleet.ns.identity import Presented
from taskfleet.ns.rules import Subject
from taskfleet.protocol.messages import Enrolment, Facts
from taskfleet.protocol.transport import Credential, hash_secret, new_secret
from taskfleet.storage.models import Base, Computer


@dataclass(frozen=True)
class EnrolRequest:
    enrolment: Enrolment
    presented: Presented = field(default_factory=Presented)


@dataclass
class Outcome:
    results: list[Credential | TaskfleetError]
    # Computers already known that got a new credential: task servers must forget the old.
    renewed: list[int] = field(default_factory=list)


@dataclass
class _Claim:
    """An enrolment of a known hardware id that may go ahead: how it was granted."""

    computer_id: int
    name: str
    proved_hash: str | None  # the credential hash its proof matched; None: by reset


async def enrol(session: AsyncSession, token: str, facts: Facts) -> Credential:
    outcome = await enrol_many(session, [EnrolRequest(Enrolment(token, facts))])
    [result] = outcome.results
    if isinstance(result, TaskfleetError):
        raise result
    return result


async def enrol_many(session: AsyncSession, requests: Sequence[EnrolRequest]) -> Outcome:
    """Per enrolment, a credential or why not; refusals are audited in this transaction."""
    facts = [r.enrolment.facts for r in requests]
    errors: dict[int, TaskfleetError] = {}
    for i, one in enumerate(facts):
        try:
            computers.check_facts(one)
        except InvalidInput as exc:
            errors[i] = exc
    valid = [i for i in range(len(requests)) if i not in errors]
    checks = dict(
        zip(
            valid,
            await tokens.check_many(session, [requests[i].enrolment.token for i in valid], "agent"),
            strict=True,
        )
    )
    for i, checked in checks.items():
        if checked.error is not None:
            errors[i] = checked.error
            _audit_token_refusal(session, requests[i], checked)
    claims = await _claims(session, requests, [i for i in valid if i not in errors], errors)
    await tokens.take_uses(session, [checks[i] for i in valid if i not in errors], "agent")
    for i in valid:
        if i not in errors and checks[i].error is not None:
            errors[i] = checks[i].error  # type: ignore[assignment]
            _audit_token_refusal(session, requests[i], checks[i])
    todo = [i for i in valid if i not in errors]
    secrets = {i: new_secret() for i in todo}
    credentials: dict[int, Credential] = {}
    fresh = [i for i in todo if i not in claims]
    ids = await _insert_new(session, [(facts[i], secrets[i]) for i in fresh])
    for i in fresh:
        if facts[i].hardware_id in ids:
            credentials[i] = Credential("agent", ids[facts[i].hardware_id], secrets[i])
        else:  # enrolled by a concurrent batch since we looked: a claim without proof
            errors[i] = identity.refusal("computer", facts[i].name)
            await _refuse_claim(
                session, requests[i], checks[i], facts[i].name, "enrolled meanwhile"
            )
    subjects = [
        Subject(credentials[i].principal, f.name, f.os, tuple(f.addresses), dict(f.facts))
        for i, f in ((i, facts[i]) for i in fresh if i in credentials)
    ]
    if subjects:  # rows inserted so bypass the ORM's membership hooks
        await session.run_sync(lambda sync: membership.refresh(sync.connection(), [], subjects))
    outcome = Outcome([])
    for i, claim in claims.items():
        if i in errors:
            continue
        if await _grant(session, claim, facts[i], secrets[i]):
            credentials[i] = Credential("agent", claim.computer_id, secrets[i])
            outcome.renewed.append(claim.computer_id)
            audit.record(
                session,
                f"agent:{facts[i].name}",
                "computer.re-enrol",
                claim.name,
                computer_id=claim.computer_id,
                by="proof" if claim.proved_hash else "reset",
                peer=requests[i].presented.peer,
            )
        else:  # the proof or the reset was used by a concurrent enrolment
            errors[i] = identity.refusal("computer", claim.name)
            await _refuse_claim(session, requests[i], checks[i], claim.name, "claimed meanwhile")
    await audit.record_many(
        session,
        [
            (f"agent:{facts[i].name}", "computer.enrol", facts[i].name)
            for i in fresh
            if i in credentials
        ],
    )
    outcome.results = [errors[i] if i in errors else credentials[i] for i in range(len(requests))]
    return outcome


async def _claims(
    session: AsyncSession,
    requests: Sequence[EnrolRequest],
    todo: list[int],
    errors: dict[int, TaskfleetError],
) -> dict[int, _Claim]:
    """Enrolments naming known hardware ids: granted claims, the rest refused (in
    ``errors``, audited). A hardware id named twice in one batch: the first is inserted
    or claimed, the later ones find it taken (no proof of the new credential)."""
    wanted = {requests[i].enrolment.facts.hardware_id for i in todo}
    rows = await session.execute(
        select(
            Computer.id,
            Computer.name,
            Computer.hardware_id,
            Computer.credential_hash,
            Computer.key_id,
            Computer.reset_at,
        ).where(Computer.hardware_id.in_(sorted(wanted)))
    )
    known = {row.hardware_id: row for row in rows}
    claims: dict[int, _Claim] = {}
    taken: set[str] = set()  # hardware ids inserted or claimed by this batch already
    for i in todo:
        request = requests[i]
        hardware_id = request.enrolment.facts.hardware_id
        row = known.get(hardware_id)
        if hardware_id not in taken:
            if row is None:
                taken.add(hardware_id)
                continue  # new: inserted below
            if identity.proves(request.presented, identity.computer_held(row)):
                claims[i] = _Claim(row.id, row.name, row.credential_hash)
            elif row.reset_at is not None:
                claims[i] = _Claim(row.id, row.name, None)
            if i in claims:
                taken.add(hardware_id)
                continue
        name = row.name if row is not None else request.enrolment.facts.name
        errors[i] = identity.refusal("computer", name)
        _audit_claim(session, request, name, "no proof of its identity", row)
    return claims


async def _grant(session: AsyncSession, claim: _Claim, facts: Facts, secret: str) -> bool:
    """Give the claimed computer its new credential if what granted the claim still
    holds (its proven credential, or the reset mark), then its facts (through the ORM:
    the membership hooks follow)."""
    condition = (
        Computer.credential_hash == claim.proved_hash
        if claim.proved_hash is not None
        else Computer.reset_at.is_not(None)
    )
    result = await session.execute(
        update(Computer)
        .where(Computer.id == claim.computer_id, condition)
        .values(credential_hash=hash_secret(secret), reset_at=None, last_contact=time.time())
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    if result.rowcount != 1:
        return False
    computer = await session.get(Computer, claim.computer_id, populate_existing=True)
    assert computer is not None
    computers.apply_facts(computer, facts)
    await session.flush()
    return True


async def _refuse_claim(
    session: AsyncSession,
    request: EnrolRequest,
    checked: tokens.Checked,
    name: str,
    why: str,
) -> None:
    await tokens.give_back(session, checked)
    _audit_claim(session, request, name, why, None)


def _audit_claim(
    session: AsyncSession, request: EnrolRequest, name: str, why: str, row: Any
) -> None:
    identity.audit_refusal(
        session,
        f"agent:{request.enrolment.facts.name}",
        "computer.enrol-refused",
        name,
        request.presented,
        reason="identity-claimed",
        why=why,
        computer_id=row.id if row is not None else None,
    )


def _audit_token_refusal(session: AsyncSession, request: EnrolRequest, checked: Any) -> None:
    audit.record(
        session,
        f"agent:{request.enrolment.facts.name}",
        "computer.enrol-refused",
        checked.label or (f"token {checked.token_id}" if checked.token_id else ""),
        reason=checked.reason,
        token_id=checked.token_id,
        peer=request.presented.peer,
    )


async def _insert_new(session: AsyncSession, rows: list[tuple[Facts, str]]) -> dict[str, int]:
    """Insert computers whose hardware id is not known yet; hardware id -> new id."""
    if not rows:
        return {}
    now = time.time()
    values = [
        {
            "hardware_id": facts.hardware_id,
            "name": facts.name,
            "addresses": list(facts.addresses),
            "os": facts.os,
            "agent_version": facts.agent_version,
            "interpreters": list(facts.interpreters),
            "facts": dict(facts.facts),
            "credential_hash": hash_secret(secret),
            "enrolled_at": now,
            "last_contact": now,
        }
        # In hardware id order: two batches inserting the same ids wait in the same order.
        for facts, secret in sorted(rows, key=lambda row: row[0].hardware_id)
    ]
    # Core, one statement for many rows (SQLAlchemy's "insertmanyvalues"), compiled once.
    table = Base.metadata.tables[Computer.__tablename__]
    dialect = session.get_bind().dialect.name
    statement = (postgresql_insert if dialect == "postgresql" else sqlite_insert)(table)
    statement = statement.on_conflict_do_nothing(index_elements=["hardware_id"])
    result = await session.execute(statement.returning(table.c.hardware_id, table.c.id), values)
    return {row.hardware_id: row.id for row in result}
