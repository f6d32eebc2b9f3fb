"""Admission of notification channels: no more than the open files allow, none while stopping.

One ``ChannelGate`` per server (the task server, and the NS in its fallback role),
held as ``app.state.channels``; ``server.serve`` sizes it from the open-files limit
(``server.capacity``) before the server starts.

Both refusals are 503 Busy with a jittered ``Retry-After`` (R11), which an agent
obeys without counting it towards failing over (R4):

- full: every channel the capacity allows is open. The agent comes back later;
  meanwhile its regular poll still delivers its work (R6), only without the tickle.
- stopping: ``stop`` answers every parked channel at once, so a stop or a
  restart takes a moment instead of a channel's whole wait. Agents come back
  spread over a window that grows with their number, about ``RECONNECT_RATE_PER_S``
  a second, so the restarted server is not hit by all of them at once.
"""

from __future__ import annotations

import random

from taskfleet.agent_endpoints.tickle import Tickler
from taskfleet.errors import Busy
from taskfleet.server.capacity import FULL_RETRY_S

UNLIMITED = 1 << 62
RECONNECT_MIN_S = 2.0  # about what a restart takes: sooner would find the port closed
# In steady state an agent renews its channel every ~45 s (50 s asked, held 80-100 %),
# so N agents renew N/45 a second. Coming back over up to one such period adds at most
# that rate again: a restarted server's load stays under twice its steady rate (R11).
# Small fleets come back sooner, at no more than RECONNECT_RATE_PER_S.
RECONNECT_RATE_PER_S = 100.0
RECONNECT_MAX_S = 45.0


class ChannelGate:
    def __init__(self, capacity: int = UNLIMITED) -> None:
        self.capacity = capacity
        self.open = 0
        self.stopping = False
        self._reconnect_window_s = RECONNECT_MIN_S
        # computer id -> its channels parked now: whom ``stop`` must wake.
        self._parked: dict[int, int] = {}

    def admit(self, computer_id: int) -> None:
        """Count one channel in, or raise Busy (full or stopping)."""
        if self.stopping:
            raise self.stopping_error()
        # An agent with a channel parked already is let in: its new channel replaces the
        # old one (``Tickler.wait``), which is most often a connection it gave up on.
        if self.open >= self.capacity and computer_id not in self._parked:
            raise Busy(
                f"this server holds {self.capacity} notification channels, as many as its "
                "open-files limit allows; polls still deliver work. Try again after "
                "Retry-After seconds",
                retry_after_s=random.uniform(*FULL_RETRY_S),
            )
        self.open += 1
        self._parked[computer_id] = self._parked.get(computer_id, 0) + 1

    def release(self, computer_id: int) -> None:
        self.open -= 1
        left = self._parked[computer_id] - 1
        if left:
            self._parked[computer_id] = left
        else:
            del self._parked[computer_id]

    def stop(self, tickler: Tickler) -> None:
        """The server is stopping: wake every parked channel; ``channel`` then answers
        ``stopping_error`` to it and to any channel still to come."""
        self.stopping = True
        self._reconnect_window_s = RECONNECT_MIN_S + min(
            RECONNECT_MAX_S, max(RECONNECT_MIN_S, self.open / RECONNECT_RATE_PER_S)
        )
        for computer_id in list(self._parked):
            tickler.tickle(computer_id)

    def stopping_error(self) -> Busy:
        return Busy(
            "this server is stopping; reconnect after Retry-After seconds",
            retry_after_s=random.uniform(RECONNECT_MIN_S, self._reconnect_window_s),
        )
