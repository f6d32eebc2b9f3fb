"""Enrolment tokens: what an admin hands out so agents and task servers can enrol."""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import InvalidInput, Unauthenticated
from taskfleet.protocol.transport import hash_secret, new_secret
from taskfleet.storage.models import EnrolmentToken

KINDS = ("agent", "taskserver")


async def create(
    session: AsyncSession,
    kind: str,
    label: str,
    uses: int | None,
    ttl_s: float | None,
    created_by: str,
) -> tuple[EnrolmentToken, str]:
    if kind not in KINDS:
        raise InvalidInput(f"token kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if uses is not None and not 1 <= uses <= 1_000_000_000:
        raise InvalidInput("uses must be between 1 and 1,000,000,000 (or omitted for unlimited)")
    if ttl_s is not None and not 0 < ttl_s <= 10 * 365 * 86400:
        raise InvalidInput("ttl must be a positive number of seconds up to 10 years (or omitted)")
    secret = f"tfe-{kind}-{new_secret()}"
    now = time.time()
    token = EnrolmentToken(
        kind=kind,
        label=label,
        token_hash=hash_secret(secret),
        created_at=now,
        expires_at=now + ttl_s if ttl_s else None,
        uses_left=uses,
        created_by=created_by,
    )
    session.add(token)
    await session.flush()
    return token, secret


async def consume(session: AsyncSession, secret: str, kind: str) -> EnrolmentToken:
    token = await session.scalar(
        select(EnrolmentToken).where(EnrolmentToken.token_hash == hash_secret(secret))
    )
    if token is None or token.kind != kind:
        raise Unauthenticated(
            "enrolment token not recognised; create one with "
            f"'taskfleet token create --kind {kind}'"
        )
    if token.expires_at is not None and token.expires_at < time.time():
        raise Unauthenticated("enrolment token has expired; create a new one")
    if token.uses_left is not None:
        if token.uses_left <= 0:
            raise Unauthenticated("enrolment token is used up; create a new one")
        token.uses_left -= 1
    return token
