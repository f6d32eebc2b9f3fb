"""One simulated agent: the real agent protocol, a scripted behaviour instead of scripts.

Per agent there are two tasks. The channel task keeps the notification channel
open; when tickled it polls at once, takes the work and sends its status (all
at once for live runs). The timer task polls every Task Request Interval and
sends held status every Send Status Interval (R5), both with jitter. Status is
held in memory until the task server acknowledges it (the simulator is the
only one who would lose it).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from taskfleet.errors import (
    NotApproved,
    NotAssigned,
    TaskfleetError,
    Unauthenticated,
    Unavailable,
)
from taskfleet.protocol.calls import error_from_reply
from taskfleet.protocol.messages import (
    AgentSettings,
    Assignment,
    AssignmentRequest,
    ChannelReply,
    Enrolment,
    Facts,
    InstanceState,
    PollReply,
    StatusAck,
    StatusEvent,
    WorkItem,
    event_json,
    from_json,
    to_json,
)
from taskfleet.simulator.behaviour import Behaviour

if TYPE_CHECKING:
    from taskfleet.simulator.fleet import SimFleet

FAILOVER_AFTER = 3  # R4
JITTER = 0.1  # R5


def jittered(seconds: float) -> float:
    return seconds * random.uniform(1 - JITTER, 1 + JITTER)


@dataclass
class SimAgent:
    index: int
    name: str
    hardware_id: str
    address: str
    behaviour: Behaviour
    fleet: SimFleet
    computer_id: int | None = None
    credential: str = ""
    state: str = "waiting"
    assignment: Assignment | None = None
    settings: AgentSettings = field(default_factory=AgentSettings)
    failures: int = 0
    backoff_until: float = 0.0
    held: dict[str, StatusEvent] = field(default_factory=dict)
    accepted: set[int] = field(default_factory=set)
    _generation: int = 0

    # --- HTTP ------------------------------------------------------------------------

    async def _call(
        self, method: str, url: str, *, body: Any = None, params: Any = None, timeout: float = 30
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.credential}"} if self.credential else {}
        if body is not None:
            headers["Content-Type"] = "application/json"
        data = None if body is None else json.dumps(body)
        self.fleet.count_request(url)
        try:
            async with self.fleet.http_for(self.index).request(
                method,
                url,
                data=data,
                params=params,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                raw = await response.read()
                if response.status >= 400:
                    self.fleet.count_error(f"{response.status} {method} {response.url.path}")
                    retry = response.headers.get("Retry-After")
                    if response.status == 503 and retry and retry.isdigit():
                        self.backoff_until = time.monotonic() + float(retry)
                    raise error_from_reply(
                        response.status, raw, where=str(response.url), retry_after=retry
                    )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.fleet.count_error(f"{exc.__class__.__name__} {method} {url.split('/', 3)[-1]}")
            raise Unavailable(f"{url}: {exc.__class__.__name__} {exc}") from exc
        return json.loads(raw) if raw else None

    async def _ts(self, method: str, path: str, **kwargs: Any) -> Any:
        """A call to the task server; failover after three failures in a row (R4)."""
        assert self.assignment is not None
        generation = self._generation
        try:
            result = await self._call(method, self.assignment.url + path, **kwargs)
        except Unavailable:
            self.failures += 1
            if self.failures >= FAILOVER_AFTER and generation == self._generation:
                self.fleet.count("failovers")
                await self.assign(failed=self.assignment.task_server_id, reason="did not answer")
            raise
        except (NotApproved, NotAssigned, Unauthenticated) as exc:
            if generation == self._generation:
                await asyncio.sleep(jittered(1.0))
                await self.assign(reason=exc.message)
            raise
        self.failures = 0
        return result

    # --- enrolment and assignment ---------------------------------------------------

    def facts(self) -> Facts:
        return Facts(
            name=self.name,
            hardware_id=self.hardware_id,
            addresses=[self.address],
            os="simulated",
            agent_version="simulator",
            interpreters=["sh"],
        )

    async def enrol(self) -> None:
        self.state = "enrolling"
        body = to_json(Enrolment(token=self.fleet.options.token, facts=self.facts()))
        async with self.fleet.ns_slots:
            data = await self._call("POST", self.fleet.ns_url + "/api/agent/enrol", body=body)
        self.computer_id = int(data["computer_id"])
        self.credential = str(data["credential"])
        self.fleet.count("enrolled")

    async def assign(self, failed: int | None = None, reason: str = "") -> None:
        """Ask the NS for a task server until it answers."""
        self.state = "assigning"
        self._generation += 1
        backoff = 1.0
        body = to_json(
            AssignmentRequest(facts=self.facts(), failed_task_server=failed, reason=reason)
        )
        while True:
            try:
                if not self.credential:
                    await self.enrol()
                async with self.fleet.ns_slots:
                    data = await self._call(
                        "POST", self.fleet.ns_url + "/api/agent/assignment", body=body
                    )
                break
            except Unauthenticated:
                self.credential = ""  # the NS forgot us: enrol again
            except TaskfleetError:
                pass
            await asyncio.sleep(jittered(backoff))
            backoff = min(backoff * 2, 30.0)
        self.assignment = from_json(Assignment, data)
        self.settings = self.assignment.settings
        self.failures = 0
        self.state = "connected"
        self.fleet.assigned(self)

    # --- life --------------------------------------------------------------------------

    async def live(self, startup_window_s: float) -> None:
        await asyncio.sleep(random.uniform(0, startup_window_s))  # R11
        await self.assign()
        if self.behaviour == Behaviour.OFFLINE:
            self.state = "offline"
            await asyncio.sleep(self.fleet.options.offline_s)
            self.state = "connected"
        await asyncio.gather(self._channel_loop(), self._timer_loop())

    async def _pause_if_told(self) -> None:
        wait = self.backoff_until - time.monotonic()
        if wait > 0:
            await asyncio.sleep(jittered(wait))

    async def _channel_loop(self) -> None:
        wait = self.fleet.options.channel_wait_s
        while True:
            await self._pause_if_told()
            try:
                reply = await self._ts(
                    "GET", "/agent/channel", params={"wait": str(wait)}, timeout=wait + 15
                )
            except TaskfleetError:
                await asyncio.sleep(jittered(2.0))
                continue
            answer = from_json(ChannelReply, reply or {"tickle": False})
            if answer.tickle:
                self.fleet.tickled(self)
                if answer.work:
                    await self._take(answer.work)
                else:
                    await self.poll()

    async def _timer_loop(self) -> None:
        next_poll = time.monotonic() + jittered(self.settings.task_request_interval_s)
        next_flush = time.monotonic() + jittered(self.settings.send_status_interval_s)
        while True:
            await asyncio.sleep(max(0.0, min(next_poll, next_flush) - time.monotonic()))
            await self._pause_if_told()
            now = time.monotonic()
            if now >= next_poll:
                next_poll = now + jittered(self.settings.task_request_interval_s)
                await self.poll()
            if now >= next_flush:
                next_flush = now + jittered(self.settings.send_status_interval_s)
                await self.send_status()

    async def poll(self) -> None:
        try:
            reply = from_json(PollReply, await self._ts("GET", "/agent/poll"))
        except TaskfleetError:
            return
        self.settings = reply.settings
        await self._take(reply.work)

    async def _take(self, work: list[WorkItem]) -> None:
        for item in work:
            if item.instance_id in self.accepted:
                continue  # never run twice (R8)
            self.accepted.add(item.instance_id)
            self.fleet.fetched(self, item)
            await self._work(item)

    # --- work and status ----------------------------------------------------------------

    async def _work(self, item: WorkItem) -> None:
        self._emit(item, InstanceState.RECEIVED)
        self._emit(item, InstanceState.RUNNING)
        if self.behaviour == Behaviour.SLOW:
            asyncio.get_running_loop().call_later(
                jittered(self.fleet.options.slow_s), self._finish_later, item, 0
            )
            await self._send_if_live(item)
        elif self.behaviour == Behaviour.RESTART:
            await self._send_if_live(item)
            self.fleet.count("restarts")
            await asyncio.sleep(jittered(1.0))
            await self.assign(reason="simulated agent restart")  # R10: stickiness dropped
            self._emit(item, InstanceState.SUCCEEDED, 0)
            await self._send_if_live(item)
        else:
            self._emit(item, *self._outcome())
            await self._send_if_live(item)

    def _outcome(self) -> tuple[InstanceState, int]:
        if self.behaviour == Behaviour.FAIL:
            return InstanceState.FAILED, 1
        return InstanceState.SUCCEEDED, 0

    def _finish_later(self, item: WorkItem, return_code: int) -> None:
        self._emit(item, InstanceState.SUCCEEDED, return_code)
        self.fleet.spawn(self._send_if_live(item))

    def _emit(self, item: WorkItem, state: InstanceState, rc: int | None = None) -> None:
        assert self.computer_id is not None
        event = StatusEvent(
            id=uuid.uuid4().hex,
            instance_id=item.instance_id,
            computer_id=self.computer_id,
            state=state.value,
            at=time.time(),
            return_code=rc,
            output=None if rc is None else f"simulated {self.behaviour.value} on {self.name}",
            live=item.live,
        )
        self.held[event.id] = event

    async def _send_if_live(self, item: WorkItem) -> None:
        if item.live:
            await self.send_status()

    async def send_status(self) -> None:
        while self.held:
            events = list(self.held.values())[:200]
            try:
                data = await self._ts(
                    "POST", "/agent/status", body={"events": [event_json(e) for e in events]}
                )
            except TaskfleetError:
                return  # held; the timer tries again
            ack = from_json(StatusAck, data)
            for event_id in ack.accepted + ack.rejected:
                event = self.held.pop(event_id, None)
                if event is not None:
                    self.fleet.reported(self, event)
            if len(events) < 200:
                return
