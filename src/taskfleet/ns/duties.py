"""Background duties of the NS that run once fleet-wide, on one replica at a time.

Each is run by ``singleton.run_duty`` under its own advisory lock, so N
replicas do it once, not N times; on SQLite the one process does it. A duty
must be safe to run twice (see ``ns.singleton``). Duties that every replica
does for itself, such as re-reading the work of the agents it serves
(``LocalRole.refresh_forever``), are not here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from sqlalchemy import delete

from taskfleet.ns import expiry, retention, run_duties, singleton
from taskfleet.ns.state import NSState
from taskfleet.storage.models import ConsoleSession

log = logging.getLogger("taskfleet.ns.duties")
SWEEP_SESSIONS = "sweep expired console sessions"
SWEEP_EVERY_S = 3600.0
PRUNE_HISTORY = "prune history older than kept (ns.retention)"
PRUNE_EVERY_S = 3600.0
END_STUCK = "end expired and overdue instances (ns.expiry)"


async def sweep_console_sessions(state: NSState) -> int:
    """Delete console sessions past their expiry (each log-in deletes them too, but
    without log-ins they would stay); returns how many went."""
    async with state.session() as session:
        result = await session.execute(
            delete(ConsoleSession).where(ConsoleSession.expires_at < time.time())
        )
    swept: int = getattr(result, "rowcount", 0) or 0
    if swept:
        log.info("swept %d expired console sessions", swept)
    return swept


async def end_stuck(state: NSState) -> expiry.Ended:
    """Expire runs' unreceived instances and end overdue ones (ns.expiry); then wake
    the runs' followers and tell task servers to drop what they hold of them."""
    async with state.session() as session:
        ended = await expiry.sweep(session, state.settings.deadline_grace_s)
    if ended.runs:
        log.info(
            "ended %d expired, %d timed-out and %d canceled instances",
            ended.expired,
            ended.timed_out,
            ended.canceled,
        )
        state.hub.runs_changed(ended.runs)
    if ended.notify:
        await state.hub.notify(ended.notify)
    return ended


def start(state: NSState) -> list[asyncio.Task[None]]:
    """Start every duty; each runs only while this replica holds its lock."""

    async def sweep() -> None:
        await sweep_console_sessions(state)

    async def stuck() -> None:
        await end_stuck(state)

    async def prune() -> None:
        settings = state.settings
        await retention.prune(state.session, settings.keep_history_s, settings.keep_audit_s)

    return [
        asyncio.create_task(
            singleton.run_duty(state.engine, SWEEP_SESSIONS, SWEEP_EVERY_S, sweep),
            name=SWEEP_SESSIONS,
        ),
        asyncio.create_task(
            singleton.run_duty(state.engine, PRUNE_HISTORY, PRUNE_EVERY_S, prune),
            name=PRUNE_HISTORY,
        ),
        asyncio.create_task(
            singleton.run_duty(state.engine, END_STUCK, state.settings.expiry_every_s, stuck),
            name=END_STUCK,
        ),
        *run_duties.start(state),  # completion, maintenance windows, schedules
    ]


async def stop(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
