"""The NS serving agents itself: the last fallback of R3, behind the same agent endpoints."""

from __future__ import annotations

import asyncio
import logging
import time

from taskfleet.agent_endpoints.tickle import Tickler
from taskfleet.errors import NotAssigned
from taskfleet.ns import audit, cancel, runs, status_intake
from taskfleet.ns.assignment import agent_settings
from taskfleet.ns.assignment_rules import STEP_NS
from taskfleet.ns.auth import authenticate_agent
from taskfleet.ns.state import NSState
from taskfleet.protocol.messages import AgentSettings, StatusAck, StatusEvent, WorkItem
from taskfleet.storage.models import Computer

log = logging.getLogger("taskfleet.ns.local_role")
CONTACT_WRITE_EVERY_S = 30.0


class LocalRole:
    def __init__(self, state: NSState) -> None:
        self.state = state

    @property
    def tickler(self) -> Tickler:
        return self.state.hub.local

    @property
    def revoked(self) -> frozenset[int]:
        return self.state.revocations.serials

    def known(self, computer_id: int, secret: str) -> AgentSettings | None:
        return None  # the NS checks the database every time: it records last contact

    async def authenticate(self, computer_id: int, secret: str, source: str) -> AgentSettings:
        async with self.state.session() as session:
            computer = await authenticate_agent(session, computer_id, secret)
            if computer.task_server_id is not None or computer.assign_step != STEP_NS:
                raise NotAssigned(
                    "the notification server does not serve this computer; ask it again "
                    "which task server to use"
                )
            now = time.time()
            if computer.last_contact is None or now - computer.last_contact > CONTACT_WRITE_EVERY_S:
                computer.last_contact = now
            return await agent_settings(session, computer)

    def has_work(self, computer_id: int) -> bool:
        return computer_id in self.state.hub.local_pending

    async def fetch_work(self, computer_id: int) -> list[WorkItem]:
        self.state.hub.local_pending.discard(computer_id)
        async with self.state.session() as session:
            return await runs.deliver(
                session,
                computer_id,
                self.state.settings.redeliver_after_s,
                secrets=self.state.secrets,
            )

    async def take_cancels(self, computer_id: int) -> list[int]:
        """Stop notices for a computer the NS serves itself (ns.cancel); its channel is
        tickled through ``Hub.notify`` like for work."""
        async with self.state.session() as session:
            refs = await cancel.take_notices(
                session, self.state.settings.redeliver_after_s, computer_id=computer_id
            )
        return [r.instance_id for r in refs]

    async def accept_status(self, computer_id: int, events: list[StatusEvent]) -> StatusAck:
        async with self.state.session() as session:
            ingested = await status_intake.ingest_isolated(session, events, via_task_server=None)
        self.state.hub.runs_changed(ingested.runs)  # committed: wake the run's followers
        return ingested.ack

    async def refused(self, computer_id: int, action: str, why: str) -> None:
        log.warning("refused computer %s: %s", computer_id, why)
        async with self.state.session() as session:
            computer = await session.get(Computer, computer_id)
            target = computer.name if computer is not None else ""
            audit.record(
                session, f"agent:{computer_id}", "agent.forbidden", target, tried=action, why=why
            )

    async def refresh_forever(self, every_s: float = 10.0) -> None:
        """Re-read which of its own computers have work, so redeliveries happen."""
        while True:
            try:
                async with self.state.session() as session:
                    pending = await runs.computers_with_work(
                        session, None, self.state.settings.redeliver_after_s
                    )
                for computer_id in pending:
                    if computer_id not in self.state.hub.local_pending:
                        self.state.hub.local_pending.add(computer_id)
                        self.tickler.tickle(computer_id)
            except Exception:
                log.exception("could not refresh the NS's own pending work")
            await asyncio.sleep(every_s)
