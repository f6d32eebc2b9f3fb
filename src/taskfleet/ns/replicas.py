"""Several NS replicas on one PostgreSQL: the hub's changes cross them by LISTEN/NOTIFY.

Each NS process on PostgreSQL keeps one connection of its own (outside the
pool) that LISTENs on ``CHANNEL`` and sends this process's hub changes with
``pg_notify``. PostgreSQL delivers every notification to every listener, this
process's own included, in the one order the sending transactions committed,
so all replicas apply the same changes in the same order and agree on each
task server's version and on the agents epoch (``ns.hub``).

A change is sent after the transaction that made it has committed (the hub is
told only then: ``state.after_commit``), so a task server woken by it reads the
committed work; if the process dies between the commit and the send, the
change is caught up by the re-polls every waiter makes anyway (a task server's
events wait, 25 s; a run follower, 0.5 s; the NS's own agents, 10 s).

Changes waiting to be sent are merged into one notice and sent in as few
notifications as fit under PostgreSQL's 8,000-byte payload limit. When the
connection drops, the link reconnects and starts with a reset (``Hub.reset_notice``)
that wakes every long poll on every replica, so what was missed meanwhile is
read again from the database; changes queued while it was down are dropped, as
the reset covers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from taskfleet.ns.hub import Hub, Notice

log = logging.getLogger("taskfleet.ns.replicas")
CHANNEL = "taskfleet"
PAYLOAD_MAX = 7900  # bytes; PostgreSQL refuses a payload of 8,000 bytes or more
KEEPALIVE_S = 10.0  # an idle link checks its connection this often
RECONNECT_MAX_S = 10.0
READY_TIMEOUT_S = 10.0


def dsn(engine: AsyncEngine) -> str:
    """The engine's database as a URL asyncpg connects to directly."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


async def connect(engine: AsyncEngine, purpose: str) -> asyncpg.Connection:
    """A connection outside the engine's pool, named in ``pg_stat_activity``."""
    return await asyncpg.connect(
        dsn(engine), server_settings={"application_name": f"taskfleet ns {purpose}"}
    )


def encode(notice: Notice, origin: str) -> list[str]:
    """JSON payloads, each under PAYLOAD_MAX bytes, that together carry ``notice``."""
    head: dict[str, Any] = {"o": origin}
    if notice.reset is not None:
        head["z"] = notice.reset
    if notice.agents_epoch is not None:
        head["e"] = notice.agents_epoch
    items = (
        [("v", (str(k), v)) for k, v in notice.versions.items()]
        + [("l", i) for i in notice.local]
        + [("r", i) for i in notice.runs]
    )
    return _split(head, items)


def _split(head: dict[str, Any], items: list[tuple[str, Any]]) -> list[str]:
    body: dict[str, Any] = dict(head)
    for key, item in items:
        if key == "v":
            body.setdefault("v", {})[item[0]] = item[1]
        else:
            body.setdefault(key, []).append(item)
    payload = json.dumps(body, separators=(",", ":"))
    if len(payload.encode()) <= PAYLOAD_MAX or len(items) <= 1:
        return [payload]
    # Too big: halve the items; the reset and the epoch travel in the first part only,
    # so they are applied before the versions that follow them.
    middle = len(items) // 2
    rest = {"o": head["o"]}
    return _split(head, items[:middle]) + _split(rest, items[middle:])


def decode(payload: str) -> tuple[Notice, str]:
    """The notice and its sender's origin; ValueError if it is not one of ours."""
    body = json.loads(payload)
    if not isinstance(body, dict) or not isinstance(body.get("o"), str):
        raise ValueError("not a taskfleet notice")
    notice = Notice(
        versions={int(k): int(v) for k, v in dict(body.get("v", {})).items()},
        local=[int(i) for i in body.get("l", [])],
        runs=[int(i) for i in body.get("r", [])],
        agents_epoch=int(body["e"]) if "e" in body else None,
        reset=int(body["z"]) if "z" in body else None,
    )
    return notice, body["o"]


class ReplicaLink:
    """This process's side of the link: queue the hub's changes, apply everyone's."""

    def __init__(self, hub: Hub, engine: AsyncEngine) -> None:
        self.hub = hub
        self.engine = engine
        self.origin = secrets.token_hex(8)  # tells this process's notices from the others'
        self._outbox = Notice()
        self._wake = asyncio.Event()
        # Set once this process's reset came back: it then agrees with every replica.
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def publish(self, notice: Notice) -> None:
        self._outbox.merge(notice)
        self._wake.set()

    async def start(self) -> None:
        """Connect and wait (bounded) until this replica is in step with the others;
        a link that cannot connect yet keeps trying in the background."""
        self.hub.publish = self.publish
        self._task = asyncio.create_task(self._run_forever(), name="ns replicas link")
        try:
            await asyncio.wait_for(self.ready.wait(), READY_TIMEOUT_S)
        except TimeoutError:
            log.warning("not yet linked to the other NS replicas; retrying in the background")

    async def stop(self) -> None:
        self.hub.publish = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run_forever(self) -> None:
        backoff = 0.5
        while True:
            try:
                conn = await connect(self.engine, "replicas")
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("cannot reach PostgreSQL for the replica link: %s", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RECONNECT_MAX_S)
                continue
            backoff = 0.5
            try:
                await self._serve(conn)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("replica link lost (%s); reconnecting", exc)
            finally:
                conn.terminate()

    async def _serve(self, conn: asyncpg.Connection) -> None:
        inbox: asyncio.Queue[str] = asyncio.Queue()
        lost = asyncio.Event()

        def closed(_conn: object) -> None:
            lost.set()
            self._wake.set()

        conn.add_termination_listener(closed)
        await conn.add_listener(CHANNEL, lambda _c, _pid, _ch, payload: inbox.put_nowait(payload))
        receiver = asyncio.create_task(self._receive(inbox))
        try:
            # Whatever was queued while away is covered by the reset, sent first.
            self._outbox = Notice()
            await self._send(conn, self.hub.reset_notice())
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), KEEPALIVE_S)
                self._wake.clear()
                if lost.is_set() or conn.is_closed():
                    raise ConnectionResetError("connection closed")
                notice, self._outbox = self._outbox, Notice()
                if notice.empty():
                    # Idle: is the connection still there? (A dead peer raises TimeoutError.)
                    await conn.execute("SELECT 1", timeout=KEEPALIVE_S)
                else:
                    await self._send(conn, notice)
        finally:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver

    async def _send(self, conn: asyncpg.Connection, notice: Notice) -> None:
        payloads = encode(notice, self.origin)
        # One transaction (asyncpg's executemany is atomic): the parts are delivered
        # together, in order.
        await conn.executemany(
            "SELECT pg_notify($1, $2)", [(CHANNEL, p) for p in payloads], timeout=KEEPALIVE_S
        )

    async def _receive(self, inbox: asyncio.Queue[str]) -> None:
        while True:
            payload = await inbox.get()
            try:
                notice, origin = decode(payload)
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("ignored a notification on %r that is not ours: %s", CHANNEL, exc)
                continue
            own = origin == self.origin
            await self.hub.apply(notice, own)
            if own and notice.reset is not None:
                self.ready.set()


async def start(hub: Hub, engine: AsyncEngine) -> ReplicaLink | None:
    """Link this process to the other replicas when the store is PostgreSQL; None on
    SQLite, which one process serves alone."""
    if engine.dialect.name != "postgresql":
        return None
    link = ReplicaLink(hub, engine)
    await link.start()
    return link
