"""Computers: enrolment of agents and lookup by id or name."""

from __future__ import annotations

import ipaddress
import time

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import Conflict, InvalidInput, NotFound
from taskfleet.ns import tokens
from taskfleet.protocol.messages import Facts
from taskfleet.protocol.transport import Credential, hash_secret, new_secret
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
    await tokens.consume(session, token, "agent")
    computer, secret = await upsert(session, facts)
    return Credential("agent", computer.id, secret)


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
