"""Status reporting: every state change of an instance, kept on disk until the task
server acknowledges it (R8), sent every Send Status Interval or at once (R5).

State: ``spool`` holds the status events not acknowledged yet (protocol.spool), so a
restart loses none; ``flush`` set means send now (a live run's change, a cancel, a new
task server). ``_sending`` lets one sender at a time take events from the spool: the
status loop, and a task that must send before the agent stops (restart, power off).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from typing import Any

from taskfleet.agent.jitter import jittered
from taskfleet.agent.task_server import TaskServer
from taskfleet.errors import InvalidInput, TaskfleetError
from taskfleet.protocol.fields import fit_return_code, printable
from taskfleet.protocol.messages import StatusAck, StatusEvent, by_request_size, from_json, to_json
from taskfleet.protocol.spool import Spool

log = logging.getLogger("taskfleet.agent")
BATCH = 200  # events taken from the spool at a time


def storable(event: StatusEvent) -> StatusEvent:
    """``event`` as the task server takes it: an event spooled by an older agent may hold an
    unsigned Windows exit code, or output with NUL (protocol.fields)."""
    output = None if event.output is None else printable(event.output)
    return_code = fit_return_code(event.return_code)
    if output == event.output and return_code == event.return_code:
        return event
    return dataclasses.replace(event, output=output, return_code=return_code)


class StatusSender:
    def __init__(self, spool: Spool, task_server: TaskServer) -> None:
        self.spool = spool
        self.task_server = task_server
        self.flush = asyncio.Event()
        self._sending = asyncio.Lock()

    def report(
        self,
        instance_id: int,
        state: str,
        rc: int | None,
        output: str | None,
        live: bool,
        reason: str | None = None,
        steps: list[dict[str, Any]] | None = None,
    ) -> None:
        """A status event for ``instance_id``, to the spool; sent at once if ``live``."""
        credential = self.task_server.ns.credential  # its principal: this computer's id
        assert credential is not None
        event = StatusEvent(
            id=uuid.uuid4().hex,
            instance_id=instance_id,
            computer_id=credential.principal,
            state=state,
            at=time.time(),
            return_code=rc,
            output=output,
            live=live,
            reason=reason,
            steps=steps,
        )
        self.spool.put([event])
        if live:
            self.flush.set()

    async def loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.flush.wait(),
                    jittered(self.task_server.settings.send_status_interval_s),
                )
            self.flush.clear()
            try:
                await self.send()
            except TaskfleetError as exc:
                log.debug("sending status failed, kept in the spool: %s", exc)
                await asyncio.sleep(jittered(2.0))
                if len(self.spool):
                    self.flush.set()

    async def send(self) -> None:
        """Everything in the spool, now."""
        async with self._sending:
            while events := self.spool.pending(BATCH):
                # Requests bounded in bytes too: 200 events of 1 MiB output are not one request.
                for request in by_request_size([storable(e) for e in events]):
                    await self._send_events(request)
                if len(events) < BATCH:
                    return

    async def send_soon(self, timeout_s: float = 10.0) -> None:
        """Send before the agent stops (a restart, a power off); what is not sent by then
        stays in the spool for the next start."""
        with contextlib.suppress(TaskfleetError, TimeoutError):
            await asyncio.wait_for(self.send(), timeout_s)

    async def _send_events(self, events: list[StatusEvent]) -> None:
        try:
            data = await self.task_server.call(
                "POST", "/agent/status", json={"events": [to_json(e) for e in events]}
            )
        except InvalidInput as exc:
            # A field the task server refuses (R12): find the event at fault by halves and
            # drop it, or every later status of this agent would wait behind it forever.
            if len(events) == 1:
                log.error("status event %s refused and dropped: %s", events[0].id, exc.message)
                self.spool.ack([events[0].id])
                return
            half = len(events) // 2
            await self._send_events(events[:half])
            await self._send_events(events[half:])
            return
        ack = from_json(StatusAck, data)
        self.spool.ack(ack.accepted + ack.rejected)
