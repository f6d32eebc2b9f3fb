"""The tickle registry: each agent's open notification channel, woken when work waits (R6).

Held by a ``WorkSource`` (``agent_endpoints.work_source``): a task server's
``Relay`` and the NS's ``LocalRole`` and ``Hub`` each tickle through one.
"""

from __future__ import annotations

import asyncio


class Tickler:
    """Open notification channels, one per agent (R6).

    State: ``_waiters`` holds the one parked channel of each agent (a future that a
    tickle resolves); ``_remembered`` the agents tickled while no channel of theirs
    was open, so a tickle that races a reconnect is not lost.

    A newer channel from the same agent replaces the older one, which answers "no
    tickle" at once: the older one is most often a connection the agent already gave
    up on (it failed over and back, or restarted), and a tickle woken there — or the
    work handed out with it — would be lost.
    """

    def __init__(self) -> None:
        self._waiters: dict[int, asyncio.Future[bool]] = {}
        self._remembered: set[int] = set()

    def tickle(self, computer_id: int) -> None:
        waiter = self._waiters.pop(computer_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(True)
        else:
            self._remembered.add(computer_id)

    async def wait(self, computer_id: int, timeout: float) -> bool:
        """True when tickled (now or while no channel was open), False after ``timeout``."""
        if computer_id in self._remembered:
            self._remembered.discard(computer_id)
            return True
        older = self._waiters.get(computer_id)
        if older is not None and not older.done():
            older.set_result(False)  # replaced by this channel
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters[computer_id] = waiter
        try:
            # asyncio.timeout, not wait_for: no extra Task per parked channel.
            async with asyncio.timeout(timeout):
                return await waiter
        except TimeoutError:
            return False
        finally:
            if self._waiters.get(computer_id) is waiter:
                del self._waiters[computer_id]

    def wake_all(self) -> None:
        """Answer every parked channel now, untickled: the server no longer serves these
        agents (it lost its approval), and each channel re-checks that and says so."""
        waiters, self._waiters = self._waiters, {}
        for waiter in waiters.values():
            if not waiter.done():
                waiter.set_result(False)

    @property
    def open_channels(self) -> int:
        return len(self._waiters)
