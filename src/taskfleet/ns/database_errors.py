"""The database's errors as HTTP responses: the NS's part of ``server.errors``.

Only the NS touches a database, so only its app registers this, after
``server.errors.install`` and before the console wraps the handlers
(``console.app.install``); the task server, which shares ``server.errors``, never
loads SQLAlchemy.

Two kinds are the caller's to act on: a value the database cannot store (400, nothing
changed) and a database too busy to take the change now (503 with Retry-After, nothing
changed). The second is SQLite's "database is locked", which it returns at once, without
waiting out its busy timeout, when a transaction that read first must write after
another connection wrote (``SQLITE_BUSY_SNAPSHOT``), and PostgreSQL's serialization
failures, deadlocks and lock timeouts. A task server keeps such a status batch in its
spool and sends it again; an agent or the CLI retries after the pause it is given.
Anything else is a 500 with its traceback in the log.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from taskfleet.server.errors import error_response, retry_after, unexpected

log = logging.getLogger("taskfleet.ns")

# SQLSTATEs of a database that could not take the change now but may in a moment:
# serialization failure, deadlock detected, lock not available.
BUSY_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
BUSY_RETRY_S = 1.0


def busy(exc: DBAPIError) -> bool:
    """Whether the database refused for now, not for good."""
    if str(getattr(exc.orig, "sqlstate", "") or "") in BUSY_SQLSTATES:
        return True
    return "database is locked" in str(exc.orig)  # SQLite: SQLITE_BUSY, no SQLSTATE


def install(app: FastAPI) -> None:
    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        # SQLSTATE class 22 is "data exception": a value the database cannot store.
        if str(getattr(exc.orig, "sqlstate", "") or "").startswith("22"):
            return error_response(
                400,
                "invalid_input",
                "a value is out of range or holds a character that cannot be stored "
                "(such as NUL, \\u0000); nothing was changed",
            )
        if busy(exc):
            log.warning("%s %s: the database is busy (%s)", request.method, request.url.path,
                        exc.orig)  # fmt: skip
            response = error_response(
                503, "unavailable", "the database is busy; nothing was changed, try again"
            )
            retry_after(response, BUSY_RETRY_S)
            return response
        return await unexpected(request, exc)
