"""A task server's work source: agents answered from memory, the NS behind it (R6, R8).

State held here, all rebuilt from the NS after a restart except the spool:
- ``agents``: the agents the NS assigned to this task server, with the hash of
  their credential and their settings; refreshed when the NS's agents epoch moves.
- ``work``: work fetched from the NS in batches, waiting for agents' polls
  (``work_cache``).
- the status spool on disk, drained to the NS in batches.

Four loops talk to the NS, each one request at a time, so their cost is per
batch and none can queue behind another: heartbeat, events (a long poll that
says work is waiting), work (fetches it, many computers per call, then tickles
their agents) and the status relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from taskfleet.agent_endpoints.tickle import Tickler
from taskfleet.errors import (
    NotApproved,
    NotAssigned,
    TaskfleetError,
    Unauthenticated,
)
from taskfleet.protocol.messages import (
    AgentEntry,
    AgentSettings,
    Approval,
    Heartbeat,
    InstanceState,
    StatusAck,
    StatusEvent,
    WorkItem,
)
from taskfleet.protocol.spool import Spool
from taskfleet.protocol.transport import hash_secret, secret_matches
from taskfleet.taskserver.dead_letters import DeadLetters
from taskfleet.taskserver.file_cache import FileCache
from taskfleet.taskserver.forbidden import ForbiddenReports
from taskfleet.taskserver.lookups import LookupLimit, Refusals
from taskfleet.taskserver.ns_link import NSLink
from taskfleet.taskserver.settings import TaskServerSettings
from taskfleet.taskserver.status_relay import StatusRelay
from taskfleet.taskserver.work_cache import WorkCache

log = logging.getLogger("taskfleet.taskserver")
_FINAL = {s.value for s in InstanceState if s.terminal}
AGENT_MAP_MIN_INTERVAL_S = 2.0
WORK_BATCH = 5000  # instances per work fetch
STATUS_BATCH = 2000  # status events per relay call


class Relay:
    def __init__(self, settings: TaskServerSettings, link: NSLink) -> None:
        self.settings = settings
        self.link = link
        self.metrics = link.metrics  # /metrics: its figures, kept by the link and here
        self.spool = Spool(settings.data_dir / "spool")
        # Events the NS will not apply are set aside there, never dropped (R12).
        self.dead_letters = DeadLetters(settings.data_dir)
        self.status_relay = StatusRelay(self.spool, self.dead_letters, self.metrics, link.status)
        self._tickler = Tickler()
        self.approval = "unknown"
        self.agents: dict[int, AgentEntry] = {}
        self.work = WorkCache()
        # Files of copy-file tasks, fetched once, verified, served to the agents handed them.
        self.files = FileCache(settings.data_dir / "files", link.fetch_file, link.may_fetch)
        # Its agents' requests for other computers, refused: told to the NS's audit log.
        self.forbidden = ForbiddenReports(link.refusals)
        self.seen: dict[int, float] = {}
        # What an agent not answered from memory may cost the NS (taskserver.lookups).
        self.refusals = Refusals()
        self.lookup_limit = LookupLimit()
        self._agents_epoch: int | None = None
        self._map_refreshed = 0.0
        self._approval_checked = 0.0
        self._flush = asyncio.Event()
        self._fetch = asyncio.Event()
        self._map_refresh: asyncio.Task[None] | None = None
        self._approval_check: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def tickler(self) -> Tickler:
        return self._tickler

    @property
    def revoked(self) -> frozenset[int]:
        return self.link.trust.revoked

    # --- the agent-facing side (WorkSource) ---------------------------------------

    def known(self, computer_id: int, secret: str) -> AgentSettings | None:
        entry = self.agents.get(computer_id)
        if (
            entry is None
            or self.approval != Approval.APPROVED
            or not secret_matches(secret, entry.credential_hash)
        ):
            return None  # authenticate() decides, with the NS if need be
        self.seen[computer_id] = time.time()
        return entry.settings

    async def authenticate(self, computer_id: int, secret: str, source: str) -> AgentSettings:
        if self.approval != Approval.APPROVED:
            await self._check_approval()
        if self.approval != Approval.APPROVED:
            raise NotApproved(
                f"task server {self.link.name or '?'} is not approved by the notification "
                "server; ask the notification server for another task server"
            )
        entry = self.agents.get(computer_id)
        if entry is None and self._map_refresh is not None and not self._map_refresh.done():
            # The whole map is on its way (a restart under many agents): wait for it
            # rather than asking the NS about each agent on its own.
            with contextlib.suppress(TaskfleetError):
                await asyncio.shield(self._map_refresh)
            entry = self.agents.get(computer_id)
        if entry is None or not secret_matches(secret, entry.credential_hash):
            # Not in the map, or another secret: assigned or re-enrolled since the map
            # was loaded? Ask the NS, unless it answered no lately or the source has
            # asked too often (taskserver.lookups).
            secret_hash = hash_secret(secret)
            self.refusals.check(computer_id, secret_hash, self._not_assigned(computer_id))
            self.lookup_limit.take(source)
            entry = await self._lookup(computer_id)
            if not secret_matches(secret, entry.credential_hash):
                self.refusals.wrong_secret(computer_id, secret_hash)
                raise Unauthenticated("agent credential not recognised; enrol the agent again")
        self.seen[computer_id] = time.time()
        return entry.settings

    async def _check_approval(self) -> None:
        """Just approved? The NS may send agents before our next heartbeat: ask it now.

        One heartbeat at a time, at most one a second, and every request that arrives
        meanwhile waits for its answer (a herd right after approval is not refused).
        """
        check = self._approval_check
        if check is None or check.done():
            if time.monotonic() - self._approval_checked <= 1.0:
                return
            self._approval_checked = time.monotonic()
            check = self._approval_check = asyncio.create_task(self._heartbeat_once())
        with contextlib.suppress(TaskfleetError):
            await asyncio.shield(check)

    async def _lookup(self, computer_id: int) -> AgentEntry:
        """An agent we do not know yet (just assigned, or re-enrolled): ask the NS once."""
        try:
            found = await self.link.agents(computer_id)
        except NotAssigned:
            self.refusals.not_assigned(computer_id)
            self.agents.pop(computer_id, None)
            raise NotAssigned(self._not_assigned(computer_id)) from None
        entry = found.agents[0]
        self.agents[computer_id] = entry
        self._fetch.set()  # just assigned here: its waiting work is ours to fetch now
        return entry

    def _not_assigned(self, computer_id: int) -> str:
        return (
            f"computer {computer_id} is not assigned to task server {self.link.name}; "
            "ask the notification server again"
        )

    def has_work(self, computer_id: int) -> bool:
        return self.work.has_work(computer_id, time.monotonic())

    async def fetch_work(self, computer_id: int) -> list[WorkItem]:
        items = self.work.take(computer_id, time.monotonic())
        self.files.grant(computer_id, items)
        return items

    async def take_cancels(self, computer_id: int) -> list[int]:
        return self.work.take_cancels(computer_id, time.monotonic())

    async def accept_status(self, computer_id: int, events: list[StatusEvent]) -> StatusAck:
        # Acknowledge only once the events are on disk: from here on they are ours (R8).
        # Concurrent agents' events share one write and one fsync.
        await self.spool.put_soon(events)
        self.status_relay.checked_at_the_edge(events)  # (agent_endpoints.api checked every field)
        self.work.settled(computer_id, {e.instance_id for e in events})
        self.work.stopped(computer_id, {e.instance_id for e in events if _final(e.state)})
        if any(e.live for e in events):
            self._flush.set()
        return StatusAck(accepted=[e.id for e in events])

    async def refused(self, computer_id: int, action: str, why: str) -> None:
        self.forbidden.add(computer_id, action, why)  # sent with the next heartbeat

    # --- the NS-facing side -------------------------------------------------------

    async def start(self) -> None:
        await self.link.start()
        if not self.link.registered:
            reply = await self.link.register()
            log.info("registered as %s (%s)", reply.name, reply.approval)
        await self._heartbeat_once()
        self._tasks = [
            asyncio.create_task(
                self._forever(self._heartbeat_once, self.settings.heartbeat_period_s)
            ),
            asyncio.create_task(self._events_loop()),
            asyncio.create_task(self._work_loop()),
            asyncio.create_task(self._relay_loop()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self._drain()
        await self.link.close()

    async def _forever(self, step: object, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                await step()  # type: ignore[operator]
            except Exception as exc:  # keep serving from memory while the NS is away
                log.warning("heartbeat failed: %s", exc)

    async def _heartbeat_once(self) -> None:
        seen, self.seen = self.seen, {}
        body = Heartbeat(
            seen={str(k): v for k, v in seen.items()},
            open_channels=self._tickler.open_channels,
            spooled=len(self.spool),
            # This start's own values, so a restart with new ones takes effect (the
            # identity registers only once); an admin's setting on the NS still wins.
            client_limit=self.settings.client_limit,
            heartbeat_period_s=self.settings.heartbeat_period_s,
            channel_capacity=self.settings.channel_capacity,
            dead_letters=self.dead_letters.count,
            dead_letter_reason=self.dead_letters.last_reason,
        )
        try:
            reply = await self.link.heartbeat(body)
        except Unauthenticated:
            log.warning("the NS no longer knows this task server; registering again")
            await self.link.register()
            reply = await self.link.heartbeat(body)
        except Exception:
            self.seen.update(seen)
            raise
        if reply.approval == Approval.APPROVED and reply.enabled:
            await self.forbidden.flush()
        was = self.approval
        self.approval = reply.approval if reply.enabled else "disabled"
        if was != self.approval:
            log.info("approval: %s", self.approval)
            if self.approval != Approval.APPROVED:
                self._lost_approval(self.approval)
            else:
                self._fetch.set()
        if reply.agents_epoch != self._agents_epoch and self.approval == Approval.APPROVED:
            await self._refresh_agents()

    def _lost_approval(self, approval: str) -> None:
        """Serve no agent any more, and tell those on open channels now, so they ask the
        NS for another task server within seconds instead of at their channel's end."""
        self.approval = approval
        self.agents.clear()
        self.work.clear()
        self._tickler.wake_all()

    async def _refresh_agents(self) -> None:
        if self._map_refresh is not None and not self._map_refresh.done():
            await asyncio.shield(self._map_refresh)
            return
        # At most one load every AGENT_MAP_MIN_INTERVAL_S; one asked for sooner is put off
        # until then, not dropped: an agent just assigned here must find itself in the map
        # (a lookup may be refused it: taskserver.lookups). Shared: an agent lookup
        # arriving meanwhile waits for this instead of asking alone.
        delay = self._map_refreshed + AGENT_MAP_MIN_INTERVAL_S - time.monotonic()
        self._map_refresh = asyncio.create_task(self._load_agent_map(delay))
        await asyncio.shield(self._map_refresh)

    async def _load_agent_map(self, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        self._map_refreshed = time.monotonic()
        found = await self.link.agents()
        self.agents = {a.computer_id: a for a in found.agents}
        self._agents_epoch = found.agents_epoch
        self.refusals.clear()  # the map now says who is assigned here
        self.work.keep_only(self.agents)

    async def _events_loop(self) -> None:
        version = -1
        backoff = 0.5
        while True:
            if self.approval != Approval.APPROVED:
                await asyncio.sleep(min(1.0, self.settings.heartbeat_period_s))
                continue
            try:
                events = await self.link.events(since=version, wait=25.0)
            except NotApproved:
                self._lost_approval(Approval.REVOKED)
                continue
            except TaskfleetError as exc:
                log.warning("events from the NS failed: %s", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            backoff = 0.5
            if events.work_waiting:
                self._fetch.set()
            version = events.version
            if events.agents_epoch != self._agents_epoch:
                try:
                    await self._refresh_agents()
                except TaskfleetError as exc:
                    log.warning("agent map refresh failed: %s", exc)

    async def _work_loop(self) -> None:
        backoff = 0.5
        while True:
            await self._fetch.wait()
            self._fetch.clear()
            try:
                await self._fetch_all()
            except NotApproved:
                self._lost_approval(Approval.REVOKED)
            except TaskfleetError as exc:
                log.warning("fetching work from the NS failed: %s", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                self._fetch.set()
                continue
            backoff = 0.5

    async def _fetch_all(self) -> None:
        while self.approval == Approval.APPROVED:
            started = time.monotonic()
            batch = await self.link.work(WORK_BATCH, self.work.known_runs())
            self.metrics.fetched(batch, time.monotonic() - started)
            for computer_id in self.work.add(batch):
                self._tickler.tickle(computer_id)
            if not batch.more:
                return

    async def _relay_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush.wait(), self.settings.status_batch_interval_s)
            self._flush.clear()
            try:
                await self._drain()
            except TaskfleetError as exc:
                log.warning("relaying status to the NS failed, kept in the spool: %s", exc)
            except Exception:  # the loop must outlive any one batch (R12)
                log.exception("relaying status to the NS failed, kept in the spool")
                await asyncio.sleep(1.0)

    async def _drain(self) -> None:
        while self.approval == Approval.APPROVED:
            events = self.spool.pending(STATUS_BATCH)
            if not events:
                return
            # Every event leaves the spool, delivered or set aside (status_relay).
            await self.status_relay.relay_batch(events)
            if len(events) < STATUS_BATCH:
                return


def _final(state: str) -> bool:
    return state in _FINAL
