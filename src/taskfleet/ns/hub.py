"""Work notifications from the NS to task servers and to its own agents (R6).

Each task server long-polls ``/api/ts/events`` with the last version it saw;
``bump`` gives its version a new value and wakes the poll, which then returns
the full list of its computers that have work (level-triggered, so a lost
wake-up costs only the time until the next poll). Agents the NS serves itself
are tickled directly. ``agents_epoch`` changes whenever an assignment or the
agent configuration changes, so task servers know to refresh their agent map.

It also wakes whoever follows a run (``GET /api/runs/{id}/wait``, behind
``taskfleet run --wait``): ``runs_changed`` after status for a run commits.

Several NS replicas (``ns.replicas``): each change made here is also handed to
``publish``, which sends it to every replica through PostgreSQL, and every
replica, this one included, gets each change back through ``apply`` in the
one order PostgreSQL delivers them. A task server may ask any replica, so they
must agree on its version and on the epoch: each new value is then random
(two replicas counting up from the same value would hand out the same one)
and the last value delivered wins everywhere. A ``reset`` (a replica
starting, or its link reconnecting after it may have missed changes) gives
every task server a new version and a new epoch on every replica at once,
which wakes every long poll: nothing missed stays missed.

``close`` on shutdown answers every long poll at once, and any later one
without waiting, so the NS stops in a moment (``server.serve.on_stop``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from taskfleet.agent_endpoints.tickle import Tickler

# Versions and epochs handed out by replicas stay below 2**53, so that any JSON
# reader keeps them exact.
VALUE_BITS = 53


@dataclass
class Notice:
    """Changes one replica tells the others about (``ns.replicas`` carries them)."""

    versions: dict[int, int] = field(default_factory=dict)  # task server id -> new version
    local: list[int] = field(default_factory=list)  # computers the NS serves, work waiting
    runs: list[int] = field(default_factory=list)  # runs whose status changed
    agents_epoch: int | None = None
    reset: int | None = None  # every task server's version from now on (with a new epoch)

    def merge(self, later: Notice) -> None:
        """Fold a later notice into this one: last values win, ids accumulate."""
        if later.reset is not None:
            self.versions.clear()
            self.reset = later.reset
        self.versions.update(later.versions)
        self.local = list(dict.fromkeys([*self.local, *later.local]))
        self.runs = list(dict.fromkeys([*self.runs, *later.runs]))
        if later.agents_epoch is not None:
            self.agents_epoch = later.agents_epoch

    def empty(self) -> bool:
        return not (self.versions or self.local or self.runs) and (
            self.agents_epoch is None and self.reset is None
        )


class Hub:
    def __init__(self) -> None:
        # Task servers without a bump since the last reset have version ``_base``.
        self._base = 0
        self._versions: dict[int, int] = {}
        self._conditions: dict[int, asyncio.Condition] = {}
        self.local = Tickler()
        # Computers the NS serves itself that have work waiting (answered from memory).
        self.local_pending: set[int] = set()
        # run id -> one event per request following that run, set when it changes.
        self._run_watchers: dict[int, set[asyncio.Event]] = {}
        # Starts at the boot time so that a restarted NS never repeats an earlier value.
        self.agents_epoch = int(time.time() * 1000)
        # Set by ns.replicas when replicas share PostgreSQL; None: this process is alone.
        self.publish: Callable[[Notice], None] | None = None
        self.closed = False

    def version(self, task_server_id: int) -> int:
        return self._versions.get(task_server_id, self._base)

    def _new_value(self, current: int) -> int:
        if self.publish is None:
            return current + 1
        return random.getrandbits(VALUE_BITS)

    def _send(self, notice: Notice) -> None:
        if self.publish is not None and not notice.empty():
            self.publish(notice)

    def _condition(self, task_server_id: int) -> asyncio.Condition:
        cond = self._conditions.get(task_server_id)
        if cond is None:
            cond = self._conditions[task_server_id] = asyncio.Condition()
        return cond

    async def _set_version(self, task_server_id: int, version: int) -> None:
        if self.version(task_server_id) == version:
            return
        self._versions[task_server_id] = version
        cond = self._condition(task_server_id)
        async with cond:
            cond.notify_all()

    async def bump(self, task_server_id: int) -> None:
        version = self._new_value(self.version(task_server_id))
        await self._set_version(task_server_id, version)
        self._send(Notice(versions={task_server_id: version}))

    async def notify(self, assigned: Iterable[tuple[int, int | None]]) -> None:
        """Tell whoever serves each ``(computer_id, task_server_id)`` that work is waiting;
        call it once the work has committed."""
        notice = Notice()
        for computer_id, task_server_id in assigned:
            if task_server_id is None:
                notice.local.append(computer_id)
                self._tickle_local(computer_id)
            elif task_server_id not in notice.versions:
                notice.versions[task_server_id] = self._new_value(self.version(task_server_id))
        for task_server_id, version in notice.versions.items():
            await self._set_version(task_server_id, version)
        self._send(notice)

    def _tickle_local(self, computer_id: int) -> None:
        self.local_pending.add(computer_id)
        self.local.tickle(computer_id)

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

    def agents_changed(self) -> None:
        self.agents_epoch = self._new_value(self.agents_epoch)
        self._send(Notice(agents_epoch=self.agents_epoch))

    def runs_changed(self, run_ids: Iterable[int]) -> None:
        """Wake the requests following these runs; call it once the change has committed."""
        notice = Notice(runs=list(run_ids))
        self._wake_runs(notice.runs)
        self._send(notice)

    def _wake_runs(self, run_ids: Iterable[int]) -> None:
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

    async def apply(self, notice: Notice, own: bool) -> None:
        """A change as PostgreSQL delivered it to every replica, in the same order.

        Versions and the epoch are set even from this replica's own notices (they were
        set here already, but another replica's may have come in between, and the last
        one delivered must win everywhere); tickles and run wake-ups were done here.
        """
        if notice.reset is not None:
            self._base = notice.reset
            self._versions.clear()
            await self._wake_all()
        for task_server_id, version in notice.versions.items():
            await self._set_version(task_server_id, version)
        if notice.agents_epoch is not None:
            self.agents_epoch = notice.agents_epoch
        if not own:
            for computer_id in notice.local:
                self._tickle_local(computer_id)
            self._wake_runs(notice.runs)

    def reset_notice(self) -> Notice:
        """What a replica sends when it joins or rejoins: new values for everything."""
        return Notice(
            reset=random.getrandbits(VALUE_BITS), agents_epoch=random.getrandbits(VALUE_BITS)
        )

    async def _wake_all(self) -> None:
        for cond in list(self._conditions.values()):
            async with cond:
                cond.notify_all()
        for watchers in self._run_watchers.values():
            for event in watchers:
                event.set()

    async def close(self) -> None:
        """The NS is stopping: every long poll returns now, and every later one at once."""
        self.closed = True
        await self._wake_all()
