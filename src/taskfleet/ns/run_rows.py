"""The rows a new run fans out to: an instance per computer and a row per target.

Both a run (``ns.runs.start_run``) and a server job's step run (``ns.server_jobs``)
are made this way, so both are found by target and delivered alike.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.ns.collections import Member
from taskfleet.ns.state import NSState, after_commit
from taskfleet.protocol.messages import InstanceState
from taskfleet.storage.models import Instance, Run, RunTarget

CHUNK = 2000  # instance rows per INSERT


async def fan_out(
    state: NSState, session: AsyncSession, run: Run, computers: Sequence[Member]
) -> None:
    """A Pending instance of ``run`` on each of ``computers``, a ``run_target`` row per
    name in ``run.targets``, and their task servers told once the transaction commits."""
    # One multi-row INSERT per chunk, not an ORM object per computer: a run on 10,000
    # computers is created in a fraction of a second.
    rows = [
        {"run_id": run.id, "computer_id": c.id, "state": InstanceState.PENDING.value}
        for c in computers
    ]
    for start in range(0, len(rows), CHUNK):
        await session.execute(insert(Instance).values(rows[start : start + CHUNK]))
    # Its targets as rows too: run-list finds runs by target (ns.run_queries).
    names = dict.fromkeys(t[:255] for t in run.targets)
    await session.execute(insert(RunTarget).values([{"run_id": run.id, "name": n} for n in names]))
    assigned = [(c.id, c.task_server_id) for c in computers]
    after_commit(session, lambda: state.hub.notify(assigned))
