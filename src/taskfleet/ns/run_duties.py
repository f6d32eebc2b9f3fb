"""The background work that keeps runs moving on their own: completion, windows, schedules.

* ``record completed runs`` (fleet-wide, one replica): records the completion
  requirement that ended each open run (``ns.completion.settle``) and wakes its
  followers;
* ``tell of opened maintenance windows`` (fleet-wide, one replica): tickles the
  computers whose window just opened (``ns.window_hold``);
* ``advance server jobs`` (fleet-wide, one replica): starts a server job's next step
  once the one before it is complete, or ends the job (``ns.server_jobs``);
* firing schedules runs on every replica: row locks, not a duty lock, make each
  occurrence fire once (``ns.schedules``).
"""

from __future__ import annotations

import asyncio

from taskfleet.ns import completion, schedules, server_jobs, singleton, window_hold
from taskfleet.ns.state import NSState

SETTLE_RUNS = "record completed runs"
SETTLE_EVERY_S = 2.0
RETICKLE = "tell of opened maintenance windows"
ADVANCE_JOBS = "advance server jobs"


def start(state: NSState) -> list[asyncio.Task[None]]:
    async def settle_runs() -> None:
        async with state.session() as session:
            ended = await completion.settle(session)
        state.hub.runs_changed(ended)  # committed: 'run --wait' followers see it now

    async def advance_jobs() -> None:
        async with state.session() as session:  # in a transaction; notifies once committed
            changed = await server_jobs.advance(state, session)
        state.hub.runs_changed(changed)

    retickler = window_hold.Retickler()

    async def retickle() -> None:
        await retickler.round(state)

    return [
        asyncio.create_task(
            singleton.run_duty(state.engine, SETTLE_RUNS, SETTLE_EVERY_S, settle_runs),
            name=SETTLE_RUNS,
        ),
        asyncio.create_task(
            singleton.run_duty(state.engine, RETICKLE, window_hold.RETICKLE_EVERY_S, retickle),
            name=RETICKLE,
        ),
        asyncio.create_task(
            singleton.run_duty(state.engine, ADVANCE_JOBS, SETTLE_EVERY_S, advance_jobs),
            name=ADVANCE_JOBS,
        ),
        asyncio.create_task(schedules.fire_forever(state), name="fire schedules"),
    ]
