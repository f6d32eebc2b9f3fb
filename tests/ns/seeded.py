"""A fresh, migrated store holding a test's seed rows: the set-up of the read-side tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.storage import database, migrate

T = TypeVar("T")


def seeded(
    db_url: str,
    seed: Callable[[AsyncSession], Awaitable[Any]],
    check: Callable[[AsyncSession, Any], Awaitable[T]],
) -> T:
    """Migrate ``db_url``, commit what ``seed`` adds, then run ``check`` in a new session
    (with what ``seed`` returned) and return its result."""

    async def go() -> T:
        engine = database.create_engine(db_url)
        try:
            await migrate.upgrade(engine)
            sessions = database.sessionmaker(engine)
            async with sessions() as session, session.begin():
                made = await seed(session)
            async with sessions() as session, session.begin():
                return await check(session, made)
        finally:
            await engine.dispose()

    return asyncio.run(go())
