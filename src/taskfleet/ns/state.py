"""What one NS process holds: settings, database sessions, the notification hub."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from taskfleet.ns.authority import Authority
from taskfleet.ns.hub import Hub
from taskfleet.ns.revocations import Revocations
from taskfleet.ns.secrets import SecretBox
from taskfleet.ns.settings import NSSettings


@dataclass
class NSState:
    settings: NSSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    hub: Hub = field(default_factory=Hub)
    # The certificate authority; None when the NS runs with --insecure-http.
    authority: Authority | None = None
    revocations: Revocations = field(default_factory=Revocations)
    # Seals secret parameter values (ns.secrets); the app loads its key from the data
    # directory, a state built by hand (tests) holds one in memory.
    secrets: SecretBox = field(default_factory=SecretBox.ephemeral)

    @property
    def agents_epoch(self) -> int:
        """Changes whenever an assignment or the agent configuration changes, so task
        servers know to refresh their agent map; kept by the hub, which shares it
        between replicas."""
        return self.hub.agents_epoch

    def agents_changed(self) -> None:
        self.hub.agents_changed()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction; ``after_commit`` callbacks run once it committed."""
        callbacks: list[Callable[[], Awaitable[None]]] = []
        async with self.sessions() as session:
            session.info["after_commit"] = callbacks
            async with session.begin():
                yield session
        for callback in callbacks:
            await callback()


def after_commit(session: AsyncSession, callback: Callable[[], Awaitable[None]]) -> None:
    """Run ``callback`` after the session's transaction commits (never if it rolls back).

    Notifications go out only then, so a task server woken by one reads committed data.
    """
    session.info["after_commit"].append(callback)


def ns_state(request: Request) -> NSState:
    state: NSState = request.app.state.ns
    return state
