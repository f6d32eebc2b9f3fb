"""Upgrading a database that holds runs keeps them whole: migration 0012 gives each its
run_target rows (run-list --target), and the later migrations that rebuild the run table
on SQLite (batch mode) take no instance or target row with them (foreign keys are off
while migrating)."""

from __future__ import annotations

import asyncio

from alembic import command
from sqlalchemy import text

from taskfleet.storage import database, migrate


def test_runs_made_before_0012_are_found_by_target(db_url: str) -> None:
    async def check() -> tuple[list[tuple[int, str]], int]:
        engine = database.create_engine(db_url)
        try:
            # Given a database at 0011 with two runs and their targets as JSON
            async with engine.begin() as conn:
                await conn.run_sync(lambda c: command.upgrade(migrate.alembic_config(c), "0011"))
                await conn.execute(
                    text("INSERT INTO task (id, name, type, params, timeout_s, builtin, "
                         "created_at, created_by) VALUES (1, 't', 'run-script', '{}', 60, "
                         "false, 1, 'a')")
                )  # fmt: skip
                for run_id, targets in ((1, '["Lab", "pc-1", "Lab"]'), (2, '["collection:Web"]')):
                    await conn.execute(
                        text("INSERT INTO run (id, task_id, targets, live, created_at, "
                             "created_by) VALUES (:id, 1, :targets, true, 1, 'a')"),
                        {"id": run_id, "targets": targets},
                    )  # fmt: skip
                await conn.execute(
                    text("INSERT INTO computer (id, name, hardware_id, addresses, os, "
                         "agent_version, interpreters, facts, enrolled_at) "
                         "VALUES (1, 'pc-1', 'h1', '[]', '', '', '[]', '{}', 1)")
                )  # fmt: skip
                await conn.execute(
                    text("INSERT INTO instance (id, run_id, computer_id, state, status_count) "
                         "VALUES (1, 1, 1, 'Succeeded', 1)")
                )  # fmt: skip
            # When the NS starts and migrates to the newest revision
            await migrate.upgrade(engine)
            async with engine.connect() as conn:
                rows = await conn.execute(
                    text("SELECT run_id, name FROM run_target ORDER BY run_id, name")
                )
                instances = await conn.scalar(text("SELECT count(*) FROM instance"))
                return [(r.run_id, r.name) for r in rows], int(instances or 0)
        finally:
            await engine.dispose()

    # Then each run has its targets as rows, each once, and its instance is still there
    targets, instances = asyncio.run(check())
    assert targets == [(1, "Lab"), (1, "pc-1"), (2, "collection:Web")]
    assert instances == 1
