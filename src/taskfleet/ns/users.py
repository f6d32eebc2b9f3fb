"""Users: who may use the API, the CLI and the console, and with which role.

Every user has an API credential (for the CLI and REST, shown once when it is
made) and may have a console password. Roles are ordered: a viewer sees
everything and changes nothing, an operator also runs tasks, an admin does
everything. Passwords are stored as scrypt hashes (``cryptography``).
"""

from __future__ import annotations

import base64
import enum
import hmac
import os
import re
import secrets
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import Conflict, InvalidInput, NotFound
from taskfleet.ns import audit
from taskfleet.protocol.transport import Credential, hash_secret, new_secret
from taskfleet.storage.models import ApiUser, ConsoleSession, is_id

MIN_PASSWORD = 10
MAX_PASSWORD = 1024
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
# scrypt cost: about 50 ms here, so a guessed password costs an attacker as much.
_N, _R, _P = 2**14, 8, 1


class Role(enum.StrEnum):
    """What a person may do; each role may do all the ones before it may (module doc).
    Stored and sent as these strings (``api_user.role``)."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    def allows(self, needed: Role) -> bool:
        """Whether this role may do what ``needed`` may."""
        order = list(Role)
        return order.index(self) >= order.index(needed)


@dataclass
class UserView:
    id: int
    name: str
    role: str
    disabled: bool
    console_login: bool
    created_at: float
    last_login: float | None


def view(user: ApiUser) -> UserView:
    return UserView(
        user.id,
        user.name,
        user.role,
        user.disabled,
        user.password_hash is not None,
        user.created_at,
        user.last_login,
    )


def check_role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        choices = ", ".join(Role)
        raise InvalidInput(f"role {role!r} must be one of: {choices}", field="role") from None


def check_password(password: str) -> str:
    try:
        password.encode()
    except UnicodeEncodeError:
        raise InvalidInput("a password must be valid text", field="password") from None
    if "\x00" in password:
        raise InvalidInput("a password cannot hold a NUL character", field="password")
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidInput(
            f"a password needs at least {MIN_PASSWORD} characters (and at most {MAX_PASSWORD})",
            field="password",
        )
    return password


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    key = Scrypt(salt=salt, length=32, n=_N, r=_R, p=_P).derive(password.encode())
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(key).decode()}"


def password_matches(password: str, stored: str | None) -> bool:
    if stored is None:
        # Spend the same time as a real check, so timing does not tell who has a password.
        hmac.compare_digest(hash_password(password), "")
        return False
    try:
        _, n, r, p, salt, key = stored.split("$")
        kdf = Scrypt(salt=base64.b64decode(salt), length=32, n=int(n), r=int(r), p=int(p))
        kdf.verify(password.encode(), base64.b64decode(key))
    except (InvalidKey, ValueError, UnicodeEncodeError):
        return False  # wrong, or a stored hash we cannot read: never a log-in
    return True


def new_password() -> str:
    return secrets.token_urlsafe(15)


async def find(session: AsyncSession, key: str) -> ApiUser:
    user = await session.get(ApiUser, int(key)) if is_id(key) else None
    if user is None:
        user = await session.scalar(select(ApiUser).where(ApiUser.name == key))
    if user is None:
        raise NotFound(f"no user {key!r}; 'taskfleet user list' shows them")
    return user


async def create(
    session: AsyncSession, name: str, role: str, password: str | None, actor: str | None
) -> tuple[ApiUser, Credential]:
    """A new user and its API credential (the only time the secret is known), audited as
    made by ``actor``; None only for the first admin the NS makes for itself at start."""
    if not _NAME.fullmatch(name) or name.isdigit():
        raise InvalidInput(
            f"user name {name!r}: 1-64 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit, not digits only",
            field="name",
        )
    checked = check_role(role)
    if await session.scalar(select(ApiUser.id).where(ApiUser.name == name)) is not None:
        raise Conflict(f"a user named {name!r} exists already")
    secret = new_secret()
    user = ApiUser(
        name=name,
        role=checked.value,
        credential_hash=hash_secret(secret),
        created_at=time.time(),
        password_hash=hash_password(check_password(password)) if password else None,
    )
    session.add(user)
    await session.flush()
    if actor is not None:
        audit.record(session, actor, "user.create", user.name, role=user.role)
    return user, Credential("admin", user.id, secret)


async def set_role(session: AsyncSession, user: ApiUser, role: str, actor: str) -> None:
    new = check_role(role)
    if user.role == Role.ADMIN and new is not Role.ADMIN:
        await _keep_an_admin(session, user)
    before, user.role = user.role, new.value
    audit.record(session, actor, "user.set-role", user.name, before=before, to=user.role)


async def set_password(session: AsyncSession, user: ApiUser, password: str, actor: str) -> None:
    user.password_hash = hash_password(check_password(password))
    await end_sessions(session, user)
    audit.record(session, actor, "user.set-password", user.name)


async def disable(session: AsyncSession, user: ApiUser, actor: str) -> None:
    if user.role == Role.ADMIN:
        await _keep_an_admin(session, user)
    user.disabled = True
    await end_sessions(session, user)
    audit.record(session, actor, "user.disable", user.name)


async def end_sessions(session: AsyncSession, user: ApiUser) -> None:
    await session.execute(delete(ConsoleSession).where(ConsoleSession.user_id == user.id))


async def _keep_an_admin(session: AsyncSession, user: ApiUser) -> None:
    others = await session.scalar(
        select(ApiUser.id)
        .where(ApiUser.role == Role.ADMIN.value, ApiUser.disabled.is_(False), ApiUser.id != user.id)
        .limit(1)
    )
    if others is None:
        raise Conflict(f"{user.name} is the last enabled admin; make another admin first")
