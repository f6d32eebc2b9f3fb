"""Revoked certificate serials, held in memory: every node call is checked against them.

Read from the database at start, after each revocation this process makes
(``ns.certificates.revoke``) and every ``REFRESH_S``, so a revocation made on
another NS replica applies here within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.storage.models import Certificate

REFRESH_S = 5.0


class Revocations:
    def __init__(self) -> None:
        self.serials: frozenset[int] = frozenset()
        self.number = 0  # how many: the CRL's number, which only grows

    async def load(self, session: AsyncSession) -> None:
        rows = (
            await session.execute(
                select(Certificate.serial).where(Certificate.revoked_at.is_not(None))
            )
        ).scalars()
        self.serials = frozenset(int(s) for s in rows)
        self.number = len(self.serials)

    async def refresh_forever(
        self, session: Callable[[], AbstractAsyncContextManager[AsyncSession]]
    ) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            with contextlib.suppress(Exception):  # the database may be down a while
                async with session() as s:
                    await self.load(s)
