"""Work notifications from the NS to task servers and to its own agents (R6).

Each task server long-polls ``/api/ts/events`` with the last version it saw;
``bump`` advances its version and wakes the poll, which then returns the full
list of its computers that have work (level-triggered, so a lost wake-up
costs only the time until the next poll). Agents the NS serves itself are
tickled directly.

It also wakes whoever follows a run (``GET /api/runs/{id}/wait``, behind
``taskfleet run --wait``): ``runs_changed`` after status for a run commits.

Process-local: with several NS replicas, a later issue carries bumps across
replicas through PostgreSQL LISTEN/NOTIFY; until then the periodic re-poll
of every task server, and the timeout of every run wait, bound the delay.

``close`` on shutdown answers every long poll at once, and any later one
without waiting, so the NS stops in a moment (``server.serve.on_stop``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator

from taskfleet.taskserver.source import Tickler


class Hub:
    def __init__(self) -> None:
        self._versions: dict[int, int] = {}
        self._conditions: dict[int, asyncio.Condition] = {}
        self.local = Tickler()
        # Computers the NS serves itself that have work waiting (answered from memory).
        self.local_pending: set[int] = set()
        # run id -> one event per request following that run, set when it changes.
        self._run_watchers: dict[int, set[asyncio.Event]] = {}
        self.closed = False

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
                    cond.wait_for(lambda: self.closed or self.version(task_server_id) != since),
                    timeout,
                )
            except TimeoutError:
                pass
        return self.version(task_server_id)

    def runs_changed(self, run_ids: Iterable[int]) -> None:
        """Wake the requests following these runs; call it once the change has committed."""
        for run_id in run_ids:
            for event in self._run_watchers.get(run_id, ()):
                event.set()

    @contextlib.contextmanager
    def watch_run(self, run_id: int) -> Iterator[asyncio.Event]:
        """An event that ``runs_changed`` sets; clear it before each read of the run, so
        that a change committed after the read is not missed."""
        event = asyncio.Event()
        if self.closed:
            event.set()
        watchers = self._run_watchers.setdefault(run_id, set())
        watchers.add(event)
        try:
            yield event
        finally:
            watchers.discard(event)
            if not watchers:
                del self._run_watchers[run_id]

    async def close(self) -> None:
        """The NS is stopping: every long poll returns now, and every later one at once."""
        self.closed = True
        for cond in list(self._conditions.values()):
            async with cond:
                cond.notify_all()
        for watchers in self._run_watchers.values():
            for event in watchers:
                event.set()
