"""Work notifications from the NS to task servers and to its own agents (R6).

Each task server long-polls ``/api/ts/events`` with the last version it saw;
``bump`` advances its version and wakes the poll, which then returns the full
list of its computers that have work (level-triggered, so a lost wake-up
costs only the time until the next poll). Agents the NS serves itself are
tickled directly.

Process-local: with several NS replicas, a later issue carries bumps across
replicas through PostgreSQL LISTEN/NOTIFY; until then the periodic re-poll
of every task server bounds the delay.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from taskfleet.taskserver.source import Tickler


class Hub:
    def __init__(self) -> None:
        self._versions: dict[int, int] = {}
        self._conditions: dict[int, asyncio.Condition] = {}
        self.local = Tickler()
        # Computers the NS serves itself that have work waiting (answered from memory).
        self.local_pending: set[int] = set()

    def version(self, task_server_id: int) -> int:
        return self._versions.get(task_server_id, 0)

    def _condition(self, task_server_id: int) -> asyncio.Condition:
        cond = self._conditions.get(task_server_id)
        if cond is None:
            cond = self._conditions[task_server_id] = asyncio.Condition()
        return cond

    async def bump(self, task_server_id: int) -> None:
        self._versions[task_server_id] = self.version(task_server_id) + 1
        cond = self._condition(task_server_id)
        async with cond:
            cond.notify_all()

    async def notify(self, assigned: Iterable[tuple[int, int | None]]) -> None:
        """Tell whoever serves each ``(computer_id, task_server_id)`` that work is waiting."""
        servers: set[int] = set()
        for computer_id, task_server_id in assigned:
            if task_server_id is None:
                self.local_pending.add(computer_id)
                self.local.tickle(computer_id)
            else:
                servers.add(task_server_id)
        for task_server_id in servers:
            await self.bump(task_server_id)

    async def wait(self, task_server_id: int, since: int, timeout: float) -> int:
        """Wait until the version differs from ``since`` or ``timeout`` passes."""
        cond = self._condition(task_server_id)
        async with cond:
            try:
                await asyncio.wait_for(
                    cond.wait_for(lambda: self.version(task_server_id) != since), timeout
                )
            except TimeoutError:
                pass
        return self.version(task_server_id)
