"""Computers: the facts agents report, and lookup by id or name (enrolment: ns.enrolment)."""

from __future__ import annotations

import ipaddress
import time
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import Conflict, InvalidInput, NotFound
from taskfleet.protocol.messages import Facts
from taskfleet.protocol.transport import hash_secret, new_secret
from taskfleet.storage.models import Computer, is_id

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
    """Create or update the computer with these facts; returns it and a new secret.

    No identity check: for tests and benches. Agents enrol through ``ns.enrolment``,
    task servers register through ``ns.registration``, which check claims (``ns.identity``)."""
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
