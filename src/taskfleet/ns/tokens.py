"""Enrolment tokens: what an admin hands out so agents and task servers can enrol.

A token is scoped to one kind (an agent token never registers a task server, nor
the other way round), expires (24 h unless the admin asks otherwise, and "never"
only when asked explicitly), may have a number of uses, and can be revoked. Only
the hash of the secret is stored; the secret is shown once, at creation.

Uses are taken in the transaction of the enrolment itself, by a conditional
``UPDATE ... SET uses_left = uses_left - n WHERE id = ... AND uses_left >= n``
whose row count says whether it took: concurrent enrolments, on any NS replica and
either store, never take more uses than the token has.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import Conflict, InvalidInput, NotFound, TokenRefused, Unauthenticated
from taskfleet.ns import audit
from taskfleet.protocol.transport import hash_secret, new_secret
from taskfleet.storage.models import MAX_ID, EnrolmentToken

KINDS = ("agent", "taskserver")
KIND_NAMES = {"agent": "agent", "taskserver": "task server"}
DEFAULT_TTL_S = 24 * 3600.0
MAX_TTL_S = 10 * 365 * 86400.0
MAX_USES = 1_000_000_000
MAX_LABEL = 255


def create_hint(kind: str) -> str:
    return f"create a new one with 'taskfleet token create --kind {kind}'"


def check_request(kind: str, label: str, uses: int | None, ttl_s: float | None) -> None:
    if kind not in KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(KINDS)}, not {kind!r}", field="kind")
    if len(label) > MAX_LABEL or any(ord(c) < 32 or 0xD800 <= ord(c) < 0xE000 for c in label):
        raise InvalidInput(f"label: at most {MAX_LABEL} printable characters", field="label")
    if uses is not None and not 1 <= uses <= MAX_USES:
        raise InvalidInput(
            "uses must be between 1 and 1,000,000,000 (or omitted for unlimited)", field="uses"
        )
    if ttl_s is not None and not (math.isfinite(ttl_s) and 0 <= ttl_s <= MAX_TTL_S):
        raise InvalidInput(
            "ttl_s: seconds until it expires, up to 10 years; 0 for never "
            f"(omitted: {DEFAULT_TTL_S / 3600:g} hours)",
            field="ttl_s",
        )


async def create(
    session: AsyncSession,
    kind: str,
    label: str,
    uses: int | None,
    ttl_s: float | None,
    created_by: str,
) -> tuple[EnrolmentToken, str]:
    """A new token and its secret, audited. ``ttl_s``: None for the default (24 h), 0 for
    never (the audit entry says so)."""
    check_request(kind, label, uses, ttl_s)
    ttl = DEFAULT_TTL_S if ttl_s is None else ttl_s
    secret = f"tfe-{kind}-{new_secret()}"
    now = time.time()
    token = EnrolmentToken(
        kind=kind,
        label=label,
        token_hash=hash_secret(secret),
        created_at=now,
        expires_at=now + ttl if ttl else None,
        uses_left=uses,
        created_by=created_by,
    )
    session.add(token)
    await session.flush()
    audit.record(
        session,
        created_by,
        "token.create",
        label or f"token {token.id}",
        token_id=token.id,
        kind=kind,
        uses=uses,
        expires_at=token.expires_at,
        **({"never_expires": True} if token.expires_at is None else {}),
    )
    return token, secret


def state_of(token: Any, now: float) -> str:
    """active, revoked, expired or used up (a token row or an ``EnrolmentToken``)."""
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= now:
        return "expired"
    if token.uses_left is not None and token.uses_left <= 0:
        return "used up"
    return "active"


def view(token: EnrolmentToken, now: float) -> dict[str, Any]:
    """A token as admins see it: everything but the secret (only its hash is stored)."""
    return {
        "id": token.id,
        "label": token.label,
        "kind": token.kind,
        "uses_left": token.uses_left,
        "expires_at": token.expires_at,
        "state": state_of(token, now),
        "created_at": token.created_at,
        "created_by": token.created_by,
        "revoked_at": token.revoked_at,
        "revoked_by": token.revoked_by,
    }


async def list_all(session: AsyncSession) -> list[dict[str, Any]]:
    now = time.time()
    rows = await session.scalars(select(EnrolmentToken).order_by(EnrolmentToken.id))
    return [view(token, now) for token in rows.all()]


async def revoke(session: AsyncSession, key: str, actor: str) -> EnrolmentToken:
    """Revoke a token by id: every enrolment with it is refused from now on (audited)."""
    key = key.strip().removeprefix("#")
    if not (key.isascii() and key.isdigit() and int(key) <= MAX_ID):
        raise InvalidInput(f"token {key!r}: give its id, as 'taskfleet token list' shows it")
    token = await session.get(EnrolmentToken, int(key))
    if token is None:
        raise NotFound(f"no enrolment token {key}; 'taskfleet token list' shows them")
    if token.revoked_at is not None:
        raise Conflict(f"enrolment token {token.id} was already revoked by {token.revoked_by}")
    token.revoked_at = time.time()
    token.revoked_by = actor
    await session.flush()
    label = token.label or f"token {token.id}"
    audit.record(session, actor, "token.revoke", label, token_id=token.id)
    return token


@dataclass
class Checked:
    """One secret presented for enrolment: the token it names, or why it is refused."""

    token_id: int | None
    label: str
    uses_limited: bool
    error: Unauthenticated | None = None
    reason: str = ""  # for the audit log: not-recognised, wrong-kind, revoked, ...

    def refuse(self, reason: str, message: str) -> None:
        self.reason = reason
        # Its own class: the node must be given a new token, enrolling again cannot help.
        self.error = TokenRefused(message)


async def check_many(session: AsyncSession, secrets: Sequence[str], kind: str) -> list[Checked]:
    """Which tokens the secrets name, and which are refused, by one query; no use is
    taken yet (``take_uses`` does that)."""
    hashes = [hash_secret(secret) for secret in secrets]
    rows = await session.execute(
        select(
            EnrolmentToken.token_hash,
            EnrolmentToken.id,
            EnrolmentToken.label,
            EnrolmentToken.kind,
            EnrolmentToken.expires_at,
            EnrolmentToken.uses_left,
            EnrolmentToken.revoked_at,
            EnrolmentToken.revoked_by,
        ).where(EnrolmentToken.token_hash.in_(set(hashes)))
    )
    found = {row.token_hash: row for row in rows}
    now = time.time()
    out = []
    for token_hash in hashes:
        row = found.get(token_hash)
        if row is None:
            checked = Checked(None, "", False)
            checked.refuse("not-recognised", f"enrolment token not recognised; {create_hint(kind)}")
        else:
            checked = Checked(row.id, row.label, row.uses_left is not None)
            _refuse_if_unusable(checked, row, kind, now)
        out.append(checked)
    return out


def _refuse_if_unusable(checked: Checked, row: Any, kind: str, now: float) -> None:
    named = f"enrolment token {row.id}" + (f" ({row.label!r})" if row.label else "")
    if row.kind != kind:
        checked.refuse(
            "wrong-kind",
            f"{named} is a {KIND_NAMES.get(row.kind, row.kind)} token: a "
            f"{KIND_NAMES[kind]} enrols only with a {KIND_NAMES[kind]} token; " + create_hint(kind),
        )
    elif row.revoked_at is not None:
        checked.refuse("revoked", f"{named} was revoked by {row.revoked_by}; {create_hint(kind)}")
    elif row.expires_at is not None and row.expires_at <= now:
        at = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(row.expires_at))
        checked.refuse("expired", f"{named} expired at {at}; {create_hint(kind)}")
    elif row.uses_left is not None and row.uses_left <= 0:
        checked.refuse("used-up", _used_up(named, kind))


def _used_up(named: str, kind: str) -> str:
    return f"{named} is used up (no uses left); {create_hint(kind)}"


async def take_uses(session: AsyncSession, checks: Sequence[Checked], kind: str) -> None:
    """Take one use of each limited token for each check not refused yet; a check whose
    token has no use left for it (taken meanwhile, or by earlier checks) is refused."""
    wanted: dict[int, list[Checked]] = {}
    for checked in checks:
        if checked.error is None and checked.uses_limited and checked.token_id is not None:
            wanted.setdefault(checked.token_id, []).append(checked)
    for token_id, items in sorted(wanted.items()):
        taken = await _take_uses(session, token_id, len(items))
        for checked in items[taken:]:
            named = f"enrolment token {token_id}" + (
                f" ({checked.label!r})" if checked.label else ""
            )
            checked.refuse("used-up", _used_up(named, kind))


async def give_back(session: AsyncSession, checked: Checked) -> None:
    """Return the use a check took (its enrolment was refused after all)."""
    if checked.uses_limited and checked.token_id is not None:
        await session.execute(
            update(EnrolmentToken)
            .where(EnrolmentToken.id == checked.token_id)
            .values(uses_left=EnrolmentToken.uses_left + 1)
            .execution_options(synchronize_session=False)
        )


async def consume(session: AsyncSession, secret: str, kind: str) -> Checked:
    """Check one secret and take one use; the check says why not, if it was refused."""
    [checked] = await check_many(session, [secret], kind)
    await take_uses(session, [checked], kind)
    return checked


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
        .where(
            EnrolmentToken.id == token_id,
            EnrolmentToken.uses_left >= uses,
            # Revoked meanwhile (another replica): no use is left to take.
            EnrolmentToken.revoked_at.is_(None),
        )
        .values(uses_left=EnrolmentToken.uses_left - uses)
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    return bool(result.rowcount == 1)
