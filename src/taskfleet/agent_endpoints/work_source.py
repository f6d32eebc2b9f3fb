"""The interface behind the agent-facing endpoints (``agent_endpoints.api``).

Two implementations: ``taskserver.relay.Relay`` (a task server: memory plus
the NS API) and ``ns.local_role.LocalRole`` (the NS serving agents itself).
"""

from __future__ import annotations

from collections.abc import Container
from typing import Protocol

from taskfleet.agent_endpoints.tickle import Tickler
from taskfleet.protocol.messages import AgentSettings, StatusAck, StatusEvent, WorkItem


class WorkSource(Protocol):
    def known(self, computer_id: int, secret: str) -> AgentSettings | None:
        """From memory only: the settings of a known agent with this secret, else None."""

    async def authenticate(self, computer_id: int, secret: str, source: str) -> AgentSettings:
        """The agent's settings; raises Unauthenticated, NotAssigned or NotApproved, or
        TooManyRequests when ``source`` (the client's address) asks too often."""

    def has_work(self, computer_id: int) -> bool:
        """Answered from memory: is work waiting for this computer?"""

    async def fetch_work(self, computer_id: int) -> list[WorkItem]: ...

    async def take_cancels(self, computer_id: int) -> list[int]:
        """Instances the agent must stop (canceled or expired), marked as told."""

    async def accept_status(self, computer_id: int, events: list[StatusEvent]) -> StatusAck:
        """Take responsibility for the events (durably) and acknowledge them."""

    async def refused(self, computer_id: int, action: str, why: str) -> None:
        """An agent asked to act for another computer and was refused (403): audit it."""

    @property
    def tickler(self) -> Tickler: ...

    @property
    def revoked(self) -> Container[int]:
        """Serials of revoked certificates: an agent presenting one is refused."""
