"""Computers: enrolment of agents and lookup by id or name."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import Conflict, InvalidInput, NotFound, TaskfleetError
from taskfleet.ns import audit, membership, tokens
from taskfleet.ns.rules import Subject
from taskfleet.protocol.messages import Enrolment, Facts
from taskfleet.protocol.transport import Credential, hash_secret, new_secret
from taskfleet.storage.models import Base, Computer, is_id

MAX_ADDRESSES = 64


def check_facts(facts: Facts) -> None:
    if not facts.name.strip() or len(facts.name) > 255:
        raise InvalidInput("facts.name must be 1 to 255 characters")
    if not facts.hardware_id.strip() or len(facts.hardware_id) > 255:
        raise InvalidInput("facts.hardware_id must be 1 to 255 characters")
    if len(facts.addresses) > MAX_ADDRESSES:
        raise InvalidInput(f"at most {MAX_ADDRESSES} addresses")

    for text in facts.addresses:
        try:
            ipaddress.ip_interface(text)
        except ValueError:
            raise InvalidInput(
                f"address {text!r} is not an address with prefix, e.g. 10.1.2.3/24"
            ) from None


def apply_facts(computer: Computer, facts: Facts) -> None:
    computer.name = facts.name
    computer.addresses = list(facts.addresses)
    computer.os = facts.os
    computer.agent_version = facts.agent_version
    computer.interpreters = list(facts.interpreters)
    computer.facts = dict(facts.facts)


# The columns ``facts_of`` reads: what an agent reports about itself.
FACT_COLUMNS = (
    Computer.hardware_id,
    Computer.name,
    Computer.addresses,
    Computer.os,
    Computer.agent_version,
    Computer.interpreters,
    Computer.facts,
)


def facts_of(row: Any) -> Facts:
    """The facts stored for a computer (a row with ``FACT_COLUMNS``, or a ``Computer``), to
    compare with what its agent reports."""
    return Facts(
        name=row.name,
        hardware_id=row.hardware_id,
        addresses=list(row.addresses or []),
        os=row.os or "",
        agent_version=row.agent_version or "",
        interpreters=list(row.interpreters or []),
        facts=dict(row.facts or {}),
    )


async def upsert(session: AsyncSession, facts: Facts) -> tuple[Computer, str]:
    """Create or update the computer with these facts; returns it and a new secret."""
    check_facts(facts)
    computer = await session.scalar(
        select(Computer).where(Computer.hardware_id == facts.hardware_id)
    )
    now = time.time()
    if computer is None:
        computer = Computer(hardware_id=facts.hardware_id, enrolled_at=now)
        session.add(computer)
    apply_facts(computer, facts)
    secret = new_secret()
    computer.credential_hash = hash_secret(secret)
    computer.last_contact = now
    await session.flush()
    return computer, secret


async def enrol(session: AsyncSession, token: str, facts: Facts) -> Credential:
    [result] = await enrol_many(session, [Enrolment(token, facts)])
    if isinstance(result, TaskfleetError):
        raise result
    return result


async def enrol_many(
    session: AsyncSession, enrolments: Sequence[Enrolment]
) -> list[Credential | TaskfleetError]:
    """Enrol agents together (a herd after a power cut, a mass install): one token query,
    one INSERT of the new computers, their membership and their audit entries in bulk.
    Per enrolment, a credential or why not. A computer enrolling again (its hardware id is
    known) keeps its id and gets a new credential."""
    errors: dict[int, TaskfleetError] = {}
    for i, enrolment in enumerate(enrolments):
        try:
            check_facts(enrolment.facts)
        except InvalidInput as exc:
            errors[i] = exc
    valid = [i for i in range(len(enrolments)) if i not in errors]
    refused = await tokens.consume_many(session, [enrolments[i].token for i in valid], "agent")
    errors.update((i, error) for i, error in zip(valid, refused, strict=True) if error)
    todo = [i for i in valid if i not in errors]
    secrets = {i: new_secret() for i in todo}
    # New hardware ids go in one INSERT; known ones, and one named twice in a batch, take
    # the ORM path below.
    first: dict[str, int] = {}
    for i in todo:
        first.setdefault(enrolments[i].facts.hardware_id, i)
    ids = await _insert_new(session, [(enrolments[i].facts, secrets[i]) for i in first.values()])
    inserted = [i for i in first.values() if enrolments[i].facts.hardware_id in ids]
    credentials = {
        i: Credential("agent", ids[enrolments[i].facts.hardware_id], secrets[i]) for i in inserted
    }
    # Rows inserted so bypass the ORM's membership hooks: store their membership here.
    fresh = [
        Subject(c.principal, f.name, f.os, tuple(f.addresses), dict(f.facts))
        for c, f in ((credentials[i], enrolments[i].facts) for i in inserted)
    ]
    if fresh:
        await session.run_sync(lambda sync: membership.refresh(sync.connection(), [], fresh))
    for i in todo:
        if i not in credentials:
            computer = await _update(session, enrolments[i].facts, secrets[i])
            credentials[i] = Credential("agent", computer.id, secrets[i])
    await audit.record_many(
        session,
        [
            (f"agent:{enrolments[i].facts.name}", "computer.enrol", enrolments[i].facts.name)
            for i in todo
        ],
    )
    return [errors[i] if i in errors else credentials[i] for i in range(len(enrolments))]


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


async def _update(session: AsyncSession, facts: Facts, secret: str) -> Computer:
    """A computer enrolling again: its facts and a new credential, through the ORM (rare;
    the membership hooks follow the change)."""
    computer = await session.scalar(
        select(Computer).where(Computer.hardware_id == facts.hardware_id)
    )
    if computer is None:  # gone since the INSERT saw it: enrol it anew
        computer, _ = await upsert(session, facts)
    apply_facts(computer, facts)
    computer.credential_hash = hash_secret(secret)
    computer.last_contact = time.time()
    await session.flush()
    return computer


async def find(session: AsyncSession, key: str) -> Computer:
    """A computer by id (``42``, ``computer:42``) or by name."""
    key = key.strip()
    if key.startswith("computer:"):
        key = key[len("computer:") :]
    query = select(Computer).where(Computer.name == key)
    if is_id(key):
        query = select(Computer).where(or_(Computer.id == int(key), Computer.name == key))
    found = (await session.scalars(query)).all()
    if not found:
        raise NotFound(f"no computer {key!r}; 'taskfleet computer list' shows them")
    if len(found) > 1:
        ids = ", ".join(str(c.id) for c in found)
        raise Conflict(f"several computers are named {key!r} (ids {ids}); use the id")
    return found[0]
