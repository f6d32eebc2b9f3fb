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

# What ``NSState.session()`` yields, by the name the console and routes type it with:
# they hand it to the NS's services and never query it themselves (import graph test).
Session = AsyncSession


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

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction; after it commits, the agents epoch moves if the
        transaction changed agents (``agents_changed``), then ``after_commit`` callbacks run."""
        callbacks: list[Callable[[], Awaitable[None]]] = []
        async with self.sessions() as session:
            session.info["after_commit"] = callbacks
            async with session.begin():
                yield session
        if session.info.get(AGENTS_CHANGED):
            self.hub.agents_changed()
        for callback in callbacks:
            await callback()


def after_commit(session: AsyncSession, callback: Callable[[], Awaitable[None]]) -> None:
    """Run ``callback`` after the session's transaction commits (never if it rolls back).

    Notifications go out only then, so a task server woken by one reads committed data.
    """
    session.info["after_commit"].append(callback)


AGENTS_CHANGED = "agents_changed"


def agents_changed(session: AsyncSession) -> None:
    """This transaction changes what task servers hold in their agent map (an assignment,
    a credential, membership or the agent configuration): the agents epoch moves once
    it has committed, once however many changes it holds, and never if it rolls back.

    Never before the commit: a task server that saw the new epoch and fetched its map
    at once would read the old rows and keep them under the new epoch. (A session
    that ``NSState.session`` did not open, as in some tests, has no epoch to move.)
    """
    session.info[AGENTS_CHANGED] = True


def ns_state(request: Request) -> NSState:
    state: NSState = request.app.state.ns
    return state
