"""Work that one NS replica at a time must do, by PostgreSQL advisory lock.

``exclusive`` waits for the lock and holds it for a block: replicas starting
together migrate the database and create the first admin one after the other.

``run_duty`` runs a periodic duty (an expiry sweep, a schedule) on whichever
replica holds the duty's lock: each replica keeps a connection for the duty
and tries to take the lock on it every ``TAKEOVER_S``; the one that gets it
runs the duty every ``every_s`` until it stops or loses that connection. It is a
session lock, so when that replica stops or dies PostgreSQL releases it and
another replica takes the duty over within ``TAKEOVER_S``. The holder checks
its connection before each round, so two replicas overlap only if a connection
is lost in the middle of a round: a duty must be safe to run twice.

On SQLite one process serves alone: no lock is taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from taskfleet.ns.replicas import connect

log = logging.getLogger("taskfleet.ns.singleton")
TAKEOVER_S = 5.0


def lock_key(name: str) -> int:
    """A stable 64-bit advisory lock key for ``name``, the same on every replica."""
    digest = hashlib.sha256(f"taskfleet:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _shared(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


@contextlib.asynccontextmanager
async def exclusive(engine: AsyncEngine, name: str) -> AsyncIterator[None]:
    """Hold lock ``name`` for the block, waiting for any replica that holds it."""
    if not _shared(engine):
        yield
        return
    conn = await connect(engine, f"lock {name}")
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", lock_key(name))
        yield
    finally:
        await conn.close()  # the session's locks go with it


async def run_duty(
    engine: AsyncEngine,
    name: str,
    every_s: float,
    duty: Callable[[], Awaitable[None]],
    takeover_s: float = TAKEOVER_S,
) -> None:
    """Run ``duty`` every ``every_s`` while this replica holds lock ``name``; forever.

    A round that fails is logged and the next one comes at its time."""
    if not _shared(engine):
        while True:
            await _round(name, duty)
            await asyncio.sleep(every_s)
    key = lock_key(name)
    conn: asyncpg.Connection | None = None  # kept open while waiting too: no reconnects
    holding = False
    due = 0.0
    loop = asyncio.get_running_loop()
    try:
        while True:
            try:
                if conn is None:
                    conn = await connect(engine, f"duty {name}")
                if holding:
                    # Still connected, so still holding (a dead peer raises TimeoutError).
                    await conn.execute("SELECT 1", timeout=takeover_s + 5)
                elif await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
                    holding, due = True, loop.time()
                    # Printed, not only logged: an admin (and a test) sees who runs it.
                    print(f"taskfleet: this replica runs the duty {name!r}", flush=True)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # OSError includes TimeoutError.
                if holding:
                    log.warning("duty %r: lost its lock with its connection (%s)", name, exc)
                if conn is not None:
                    conn.terminate()
                conn, holding = None, False
            if holding and loop.time() >= due:
                await _round(name, duty)
                due = loop.time() + every_s
            wait = min(takeover_s, due - loop.time()) if holding else takeover_s
            await asyncio.sleep(max(wait, 0.0))
    finally:
        if conn is not None:
            conn.terminate()


async def _round(name: str, duty: Callable[[], Awaitable[None]]) -> None:
    try:
        await duty()
    except Exception:
        log.exception("duty %r failed; it runs again at its next time", name)
