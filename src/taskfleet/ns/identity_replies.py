"""Replies of the APIs for who may join and act (``ns.api_identity``, ``ns.api_users``),
for the OpenAPI document.

FastAPI drops keys a reply's type lacks, so a key added to a reply must be added here
too. A warning is there only when there is one: absent, not null.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

from taskfleet.ns.users import UserView

# --- enrolment tokens --------------------------------------------------------------------


@dataclass
class TokenView:
    """A token as admins see it (``ns.tokens.view``): everything but the secret (only its
    hash is kept)."""

    id: int
    label: str
    kind: str  # agent, taskserver
    uses_left: int | None  # None: unlimited
    expires_at: float | None  # None: never
    state: str  # active, revoked, expired, used up
    created_at: float
    created_by: str
    revoked_at: float | None
    revoked_by: str | None


@dataclass(kw_only=True)
class TokenCreated(TokenView):
    token: str  # the secret, in this reply only
    # Only for a token that never expires; absent otherwise, never null.
    warning: Annotated[str | None, Field(exclude_if=lambda v: v is None)] = None


@dataclass
class ComputerReset:
    """A computer whose credential was dropped (``ns.identity.reset_computer``)."""

    id: int
    name: str
    reset_at: float | None
    task_server: str | None  # the task server on this computer, pending again; else None


# --- users -------------------------------------------------------------------------------


@dataclass
class Caller:
    """Who the credential of a request is (``GET /api/me``)."""

    name: str
    role: str


@dataclass
class UserCreated(UserView):
    credential: str  # its secret, in this reply only (only its hash is kept)
