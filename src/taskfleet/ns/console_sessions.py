"""Console log-in sessions in the database: the cookie's token is stored only as its hash,
with the session's CSRF token. The console (``console.sessions``) keeps the cookie, the
CSRF check and the brake on guessing; this is what it stores and reads."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.ns import audit
from taskfleet.ns.users import Role
from taskfleet.protocol.transport import hash_secret
from taskfleet.storage.models import ApiUser, ConsoleSession


@dataclass(frozen=True)
class Holder:
    """Who holds a live session, and its CSRF token."""

    name: str
    role: Role
    csrf: str


@dataclass(frozen=True)
class Opened:
    token: str  # for the cookie; never stored
    holder: Holder


async def user_named(session: AsyncSession, name: str) -> ApiUser | None:
    return await session.scalar(select(ApiUser).where(ApiUser.name == name))


async def open_session(
    session: AsyncSession, user: ApiUser, lasts_s: float, replaces: str | None = None
) -> Opened:
    """A new session for ``user`` (who just proved their password), replacing the
    session of the token ``replaces`` (the browser's previous one); expired sessions go.
    Audited (``console.login``)."""
    token, csrf, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), time.time()
    await session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at < now))
    if replaces:
        await close_session(session, replaces)
    session.add(
        ConsoleSession(
            token_hash=hash_secret(token),
            user_id=user.id,
            csrf_token=csrf,
            created_at=now,
            expires_at=now + lasts_s,
        )
    )
    user.last_login = now
    audit.record(session, user.name, "console.login", user.name)
    return Opened(token, Holder(user.name, Role(user.role), csrf))


def refused(session: AsyncSession, name: str) -> None:
    """A failed log-in as ``name`` (unknown, disabled or a wrong password), audited; the
    caller commits it before refusing."""
    audit.record(session, f"console:{name}"[:255], "console.login-failed", name[:255])


async def close_session(session: AsyncSession, token: str) -> None:
    await session.execute(
        delete(ConsoleSession).where(ConsoleSession.token_hash == hash_secret(token))
    )


async def holder(session: AsyncSession, token: str) -> Holder | None:
    """The holder of the session of this token; None when there is none, it expired or
    its user was disabled."""
    row = (
        await session.execute(
            select(ConsoleSession, ApiUser)
            .join(ApiUser, ApiUser.id == ConsoleSession.user_id)
            .where(ConsoleSession.token_hash == hash_secret(token))
        )
    ).first()
    if row is None or row[0].expires_at < time.time() or row[1].disabled:
        return None
    return Holder(row[1].name, Role(row[1].role), row[0].csrf_token)
