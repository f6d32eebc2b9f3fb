"""What this task server refused its own agents, on its way to the NS's audit log.

An authenticated agent that names another computer in a request (a status event
for another computer, say) is refused 403 at once (``agent_endpoints.api``). The task server
has no audit log of its own, so each refusal is logged here and kept until the
next heartbeat sends it to the NS (``/api/ts/refusals``), which audits it. Kept in
memory and bounded: a misbehaving agent costs a counter, not memory, and the log
line stays as the local record when the NS cannot be told.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from taskfleet.errors import TaskfleetError
from taskfleet.protocol.messages import Refusal, Refusals

log = logging.getLogger("taskfleet.taskserver")
MAX_PENDING = 100  # the NS records at most this many a call


class ForbiddenReports:
    def __init__(self, send: Callable[[Refusals], Awaitable[object]]) -> None:
        self._send = send
        self.pending: list[Refusal] = []
        self.dropped = 0  # refusals not reported (more than MAX_PENDING between heartbeats)

    def add(self, computer_id: int, action: str, why: str) -> None:
        log.warning("refused computer %s (%s): %s", computer_id, action, why)
        if len(self.pending) < MAX_PENDING:
            self.pending.append(Refusal(computer_id, action, why[:500]))
        else:
            self.dropped += 1

    async def flush(self) -> None:
        """Send what is pending; kept for the next heartbeat if the NS cannot be told."""
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        try:
            await self._send(Refusals(batch))
        except TaskfleetError as exc:
            log.warning("could not report %d refusals to the NS: %s", len(batch), exc)
            self.pending = (batch + self.pending)[:MAX_PENDING]
