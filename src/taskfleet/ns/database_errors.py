"""The database's errors as HTTP responses: the NS's part of ``server.errors``.

Only the NS touches a database, so only its app registers this, after
``server.errors.install`` and before the console wraps the handlers
(``console.app.install``); the task server, which shares ``server.errors``, never
loads SQLAlchemy.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from taskfleet.server.errors import error_response, unexpected


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
        return await unexpected(request, exc)
