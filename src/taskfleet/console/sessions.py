"""Console log-in: sessions in a cookie, CSRF tokens, and a brake on password guessing.

The cookie holds a random token; the database keeps only its hash, with the
session's CSRF token. Every change (a POST) must carry that CSRF token, in the
``csrf`` form field or the ``X-CSRF-Token`` header htmx sends, so another site
cannot make a logged-in browser change anything. Failed log-ins are counted
per user name and per client address in this process: after ``MAX_FAILURES``
in ``WINDOW_S`` seconds, log-in is refused until the window has passed.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response

from taskfleet.errors import Forbidden, InvalidInput, TooManyRequests, Unauthenticated
from taskfleet.ns import console_sessions, users
from taskfleet.ns.auth import Admin
from taskfleet.ns.state import ns_state

COOKIE = "taskfleet_session"
SESSION_S = 12 * 3600
MAX_FAILURES = 5
WINDOW_S = 300.0


@dataclass(frozen=True)
class ConsoleUser(Admin):
    csrf: str = ""

    def can(self, role: users.Role | str) -> bool:
        # Templates ask with the role's string: user.can("admin").
        return self.role.allows(users.Role(role))


class LoginBrake:
    """Recent failures per key (a user name, a client address), forgotten after WINDOW_S."""

    def __init__(self) -> None:
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(key, deque())
        while failures and now - failures[0] > WINDOW_S:
            failures.popleft()
        return failures

    def check(self, *keys: str) -> None:
        now = time.monotonic()
        for key in keys:
            failures = self._recent(key, now)
            if len(failures) >= MAX_FAILURES:
                wait = int(WINDOW_S - (now - failures[0])) + 1
                raise TooManyRequests(f"too many failed log-ins; try again in {wait} seconds")

    def attempt(self, *keys: str) -> float:
        """Count an attempt as failed *before* checking the password, so parallel
        guesses cannot all slip in under the limit; ``succeeded`` takes it back."""
        self.check(*keys)
        now = time.monotonic()
        for key in keys:
            self._recent(key, now).append(now)
        if len(self._failures) > 10_000:  # bounded: drop keys with no recent failure
            for key in [k for k in self._failures if not self._recent(k, now)]:
                del self._failures[key]
        return now

    def succeeded(self, stamp: float, *keys: str) -> None:
        for key in keys:
            failures = self._failures.get(key)
            if failures is not None and stamp in failures:
                failures.remove(stamp)


brake = LoginBrake()


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def log_in(request: Request, response: Response, name: str, password: str) -> ConsoleUser:
    if not name or len(name) > 255 or "\x00" in name + password:
        raise Unauthenticated("wrong user name or password")
    keys = (f"user:{name}", f"addr:{client_address(request)}")
    stamp = brake.attempt(*keys)
    async with ns_state(request).session() as session:
        user = await console_sessions.user_named(session, name)
        stored = user.password_hash if user is not None and not user.disabled else None
        # scrypt takes ~50 ms of CPU: off the event loop that also serves agents.
        matches = await asyncio.to_thread(users.password_matches, password, stored)
        if user is None or not matches:
            # Recorded and committed before refusing: a failed log-in is worth auditing.
            console_sessions.refused(session, name)
            logged_in = None
        else:
            brake.succeeded(stamp, *keys)
            # A new log-in replaces whatever session this browser had.
            previous = request.cookies.get(COOKIE)
            opened = await console_sessions.open_session(session, user, SESSION_S, previous)
            token = opened.token
            logged_in = ConsoleUser(opened.holder.name, opened.holder.role, opened.holder.csrf)
    if logged_in is None:
        raise Unauthenticated("wrong user name or password")
    response.set_cookie(
        COOKIE,
        token,
        max_age=SESSION_S,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return logged_in


async def log_out(request: Request, response: Response) -> None:
    token = request.cookies.get(COOKIE)
    if token:
        async with ns_state(request).session() as session:
            await console_sessions.close_session(session, token)
    response.delete_cookie(COOKIE, path="/")


def _no_nul(values: Iterable[object]) -> None:
    # PostgreSQL cannot store NUL in text; refuse it here, where a person can be told.
    if any(isinstance(v, str) and "\x00" in v for v in values):
        raise InvalidInput("a field holds a NUL character (\\u0000); remove it and try again")


async def _current(request: Request) -> ConsoleUser:
    _no_nul([*request.path_params.values(), *request.query_params.values()])
    token = request.cookies.get(COOKIE)
    if not token:
        raise Unauthenticated("log in first")
    async with ns_state(request).session() as session:
        found = await console_sessions.holder(session, token)
    if found is None:
        raise Unauthenticated("your session ended; log in again")
    user = ConsoleUser(found.name, found.role, found.csrf)
    request.state.console_user = user
    return user


async def _changing(request: Request) -> ConsoleUser:
    user = await _current(request)
    form = await request.form()
    sent = request.headers.get("x-csrf-token")
    if sent is None:
        field = form.get("csrf")
        sent = field if isinstance(field, str) else None
    if not sent or not hmac.compare_digest(sent.encode(), user.csrf.encode()):
        raise Forbidden("this form is out of date (missing or wrong CSRF token); reload the page")
    _no_nul(form.values())
    return user


# A logged-in user (any role); and one making a change, with the CSRF token checked.
Viewing = Annotated[ConsoleUser, Depends(_current)]
Changing = Annotated[ConsoleUser, Depends(_changing)]
