"""The Alembic migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from taskfleet.storage import database, migrate
from taskfleet.storage.models import Base


def test_migrations_match_models(db_url: str) -> None:
    async def check() -> list[object]:
        engine = database.create_engine(db_url)
        try:
            await migrate.upgrade(engine)
            await migrate.upgrade(engine)  # a second start is a no-op

            def diff(conn: Connection) -> list[object]:
                return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))

            async with engine.connect() as conn:
                return await conn.run_sync(diff)
        finally:
            await engine.dispose()

    assert asyncio.run(check()) == []
