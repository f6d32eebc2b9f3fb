"""One pass of the status relay: spooled events to the NS, none able to block the rest (R8, R12).

``relay_batch`` takes the oldest events of the spool and

1. checks every field (``protocol.fields``) of the events this process did not take
   through its agent endpoint, which checked them already: those spooled before a
   restart, maybe by an older version. One that fails is set aside at once, and
   script output is sent escaped (NUL as U+2400) as the check returns it;
2. sends them in requests bounded in size (a batch of big outputs would exceed the
   NS's body limit, and a 413 for it would come back on every attempt);
3. splits a request the NS refuses whole as bad (400) or too large (413) in halves,
   down to the one event at fault, which is set aside with the NS's message;
4. sets aside every event the NS rejected (``StatusAck.rejected``, with its reason)
   and removes accepted and rejected events from the spool.

Set aside means parked in the dead letters (``taskserver.dead_letters``) *before* it
leaves the spool. Any other failure (the NS away, a 5xx) leaves the events in the
spool to be sent again: nothing is set aside for a fault that is not the event's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from pydantic import TypeAdapter, ValidationError

from taskfleet.errors import InvalidInput, PayloadTooLarge
from taskfleet.protocol import step_records
from taskfleet.protocol.messages import StatusAck, StatusEvent, by_request_size, event_json
from taskfleet.protocol.spool import Spool
from taskfleet.server.validation import describe_validation
from taskfleet.taskserver.dead_letters import DeadLetters
from taskfleet.taskserver.metrics import TaskServerMetrics

MAX_REQUEST_BYTES = 512 * 1024  # well inside the NS's default body limit (1 MiB)
_EVENT = TypeAdapter(StatusEvent)
Send = Callable[[list[StatusEvent]], Awaitable[StatusAck]]


def checked(events: list[StatusEvent]) -> tuple[list[StatusEvent], list[tuple[StatusEvent, str]]]:
    """The events as they may be sent, and those that fail a field check, with why."""
    good: list[StatusEvent] = []
    bad: list[tuple[StatusEvent, str]] = []
    for event in events:
        try:
            good.append(_EVENT.validate_python(event_json(event)))
        except ValidationError as exc:
            reason = describe_validation(list(exc.errors()))
            bad.append((event, f"refused by this task server: {reason}"))
    return good, bad


def by_size(events: list[StatusEvent], budget: int = MAX_REQUEST_BYTES) -> list[list[StatusEvent]]:
    """Events in requests of at most ``budget`` bytes, as far as an estimate tells
    (an output's character may take up to 6 bytes as JSON: ``\\uXXXX``)."""
    return by_request_size(events, budget, _estimate)


def _estimate(event: StatusEvent) -> int:
    return 256 + 6 * (len(event.output or "") + step_records.output_size(event.steps))


class StatusRelay:
    def __init__(
        self, spool: Spool, dead_letters: DeadLetters, metrics: TaskServerMetrics, send: Send
    ) -> None:
        self.spool = spool
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.send = send
        # Spooled events the agent endpoint checked, by id (about 12 us an event saved
        # here); forgotten once the event leaves the spool. The very object is compared:
        # an event spooled before a restart under the same id was not checked.
        self._checked: dict[str, StatusEvent] = {}

    def checked_at_the_edge(self, events: list[StatusEvent]) -> None:
        self._checked.update((e.id, e) for e in events)

    async def relay_batch(self, events: list[StatusEvent]) -> None:
        good, bad = checked([e for e in events if self._checked.get(e.id) is not e])
        if len(good) + len(bad) < len(events):  # some checked already: keep the spool's order
            fresh = {e.id: e for e in good}
            good = [
                fresh.get(e.id, e) for e in events if e.id in fresh or self._checked.get(e.id) is e
            ]
        await self._set_aside(bad)
        for request in by_size(good):
            await self._send(request)

    async def _send(self, events: list[StatusEvent]) -> None:
        started = time.monotonic()
        try:
            ack = await self.send(events)
        except (InvalidInput, PayloadTooLarge) as exc:
            # The NS refused the request whole: find the event at fault by halves.
            if len(events) == 1:
                await self._set_aside([(events[0], f"the NS refused it: {exc.message}")])
                return
            half = len(events) // 2
            await self._send(events[:half])
            await self._send(events[half:])
            return
        self.metrics.relayed(len(events), ack, time.monotonic() - started)
        rejected = set(ack.rejected)
        await self._set_aside(
            [
                (e, f"the NS rejected it: {ack.reasons.get(e.id, 'no reason given')}")
                for e in events
                if e.id in rejected
            ],
            also_ack=ack.accepted,
        )

    async def _set_aside(
        self, rejected: list[tuple[StatusEvent, str]], also_ack: list[str] | None = None
    ) -> None:
        """Park ``rejected`` in the dead letters, then take them (and ``also_ack``) out of
        the spool: in that order, so a crash in between loses nothing."""
        if rejected:
            await asyncio.to_thread(self.dead_letters.park, rejected)
            self.metrics.dead_letters.inc(len(rejected))
        ids = [e.id for e, _ in rejected] + (also_ack or [])
        if ids:
            await asyncio.to_thread(self.spool.ack, ids)
            for event_id in ids:
                self._checked.pop(event_id, None)
