"""Enrolment tokens: what an admin hands out so agents and task servers can enrol."""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.engine import CursorResult
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


async def consume(session: AsyncSession, secret: str, kind: str) -> None:
    """Take one use of an enrolment token, or raise ``Unauthenticated`` saying why not."""
    [error] = await consume_many(session, [secret], kind)
    if error is not None:
        raise error


async def consume_many(
    session: AsyncSession, secrets: Sequence[str], kind: str
) -> list[Unauthenticated | None]:
    """Take one use of each token named (a token may be named many times): None where
    that worked, else why not. One query for all; a token with a limited number of uses
    is counted down by a conditional UPDATE, so concurrent enrolments (on any NS replica)
    never take more uses than it has."""
    hashes = [hash_secret(secret) for secret in secrets]
    rows = await session.execute(
        select(
            EnrolmentToken.token_hash,
            EnrolmentToken.id,
            EnrolmentToken.kind,
            EnrolmentToken.expires_at,
            EnrolmentToken.uses_left,
        ).where(EnrolmentToken.token_hash.in_(set(hashes)))
    )
    found = {row.token_hash: row for row in rows}
    now = time.time()
    out: list[Unauthenticated | None] = []
    limited: dict[int, list[int]] = {}  # token id -> the items that want one of its uses
    for i, token_hash in enumerate(hashes):
        row = found.get(token_hash)
        if row is None or row.kind != kind:
            out.append(
                Unauthenticated(
                    "enrolment token not recognised; create one with "
                    f"'taskfleet token create --kind {kind}'"
                )
            )
        elif row.expires_at is not None and row.expires_at < now:
            out.append(Unauthenticated("enrolment token has expired; create a new one"))
        else:
            out.append(None)
            if row.uses_left is not None:
                limited.setdefault(row.id, []).append(i)
    for token_id, items in limited.items():
        taken = await _take_uses(session, token_id, len(items))
        for i in items[taken:]:
            out[i] = Unauthenticated("enrolment token is used up; create a new one")
    return out


async def _take_uses(session: AsyncSession, token_id: int, wanted: int) -> int:
    """Take up to ``wanted`` uses of a limited token; returns how many it had."""
    if wanted > 1 and await _take(session, token_id, wanted):
        return wanted
    taken = 0
    while taken < wanted and await _take(session, token_id, 1):
        taken += 1
    return taken


async def _take(session: AsyncSession, token_id: int, uses: int) -> bool:
    result = await session.execute(
        update(EnrolmentToken)
        .where(EnrolmentToken.id == token_id, EnrolmentToken.uses_left >= uses)
        .values(uses_left=EnrolmentToken.uses_left - uses)
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    return bool(result.rowcount == 1)
