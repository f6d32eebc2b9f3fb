"""Apply Alembic migrations at NS start, on the NS's own async engine."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


async def upgrade(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        sqlite = engine.dialect.name == "sqlite"
        if sqlite:
            # Batch migrations rebuild a SQLite table: copy, DROP, rename. With foreign
            # keys on, that DROP deletes the rows of every table referencing it ON DELETE
            # CASCADE (a run table rebuilt took all instances with it). Off for the
            # migration; the PRAGMA is a no-op inside a transaction, so it comes first.
            await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            await conn.commit()
        try:
            async with conn.begin():
                await conn.run_sync(
                    lambda sync_conn: command.upgrade(alembic_config(sync_conn), "head")
                )
        finally:
            if sqlite:
                await conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                await conn.commit()
