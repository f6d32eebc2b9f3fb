"""The interface behind the agent-facing endpoints, and the tickle registry.

Two implementations: ``taskserver.relay.Relay`` (a task server: memory plus
the NS API) and ``ns.local_role.LocalRole`` (the NS serving agents itself).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from taskfleet.protocol.messages import AgentSettings, StatusAck, StatusEvent, WorkItem


class WorkSource(Protocol):
    def known(self, computer_id: int, secret: str) -> AgentSettings | None:
        """From memory only: the settings of a known agent with this secret, else None."""

    async def authenticate(self, computer_id: int, secret: str) -> AgentSettings:
        """The agent's settings; raises Unauthenticated, NotAssigned or NotApproved."""

    def has_work(self, computer_id: int) -> bool:
        """Answered from memory: is work waiting for this computer?"""

    async def fetch_work(self, computer_id: int) -> list[WorkItem]: ...

    async def accept_status(self, computer_id: int, events: list[StatusEvent]) -> StatusAck:
        """Take responsibility for the events (durably) and acknowledge them."""

    @property
    def tickler(self) -> Tickler: ...


class Tickler:
    """Open notification channels, one waiter per agent (R6).

    A tickle for an agent whose channel is not open right now is remembered
    until it next opens one, so a tickle that races a reconnect is not lost.
    """

    def __init__(self) -> None:
        self._events: dict[int, asyncio.Event] = {}
        self._open: dict[int, int] = {}

    def _event(self, computer_id: int) -> asyncio.Event:
        event = self._events.get(computer_id)
        if event is None:
            event = self._events[computer_id] = asyncio.Event()
        return event

    def tickle(self, computer_id: int) -> None:
        self._event(computer_id).set()

    async def wait(self, computer_id: int, timeout: float) -> bool:
        event = self._event(computer_id)
        self._open[computer_id] = self._open.get(computer_id, 0) + 1
        try:
            # asyncio.timeout, not wait_for: no extra Task per parked channel.
            async with asyncio.timeout(timeout):
                await event.wait()
            event.clear()
            return True
        except TimeoutError:
            return False
        finally:
            left = self._open[computer_id] - 1
            if left:
                self._open[computer_id] = left
            else:
                del self._open[computer_id]
                if not event.is_set():
                    # Nothing remembered: drop the event so idle agents cost nothing.
                    self._events.pop(computer_id, None)

    @property
    def open_channels(self) -> int:
        return sum(self._open.values())
