"""The NS's database errors as replies: a busy database is a 503 to retry, not a 500."""

from __future__ import annotations

import asyncio
import logging
import sqlite3

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import OperationalError

from taskfleet.ns import database_errors
from taskfleet.server import errors


class _Busy(Exception):
    """A driver error with a SQLSTATE, as asyncpg's are."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"SQLSTATE {sqlstate}")
        self.sqlstate = sqlstate


def post(app: FastAPI, path: str) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://ns") as client:
            return await client.post(path)

    return asyncio.run(go())


def app_raising(orig: Exception) -> FastAPI:
    app = FastAPI()
    errors.install(app)
    database_errors.install(app)

    @app.post("/api/ts/status")
    async def status() -> None:
        raise OperationalError("INSERT INTO status_seen ...", {}, orig)

    return app


@pytest.mark.parametrize(
    "orig",
    [sqlite3.OperationalError("database is locked"), _Busy("40001"), _Busy("40P01")],
    ids=["sqlite-locked", "pg-serialization", "pg-deadlock"],
)
def test_a_busy_database_asks_the_caller_to_retry(
    orig: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a route whose transaction the database refused for now
    app = app_raising(orig)

    # When it is called
    with caplog.at_level(logging.WARNING):
        reply = post(app, "/api/ts/status")

    # Then the caller is told to come back, nothing changed, and the log has no traceback
    assert reply.status_code == 503
    assert reply.headers["retry-after"] == "1"
    assert reply.json()["error"] == "unavailable"
    assert "nothing was changed" in reply.json()["message"]
    assert not any(r.exc_info for r in caplog.records)


def test_another_database_error_is_still_a_500() -> None:
    app = app_raising(sqlite3.OperationalError("disk I/O error"))
    assert post(app, "/api/ts/status").status_code == 500
