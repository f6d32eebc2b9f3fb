"""Run followers are woken only once the change they follow has committed."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskfleet.ns.settings import NSSettings
from taskfleet.ns.state import NSState, runs_changed
from taskfleet.storage import database


class Rollback(Exception):
    pass


async def test_run_followers_are_woken_after_the_commit_and_not_after_a_rollback(
    tmp_path: Path,
) -> None:
    db_url = f"sqlite:///{tmp_path / 'ns.db'}"
    engine = database.create_engine(db_url)
    state = NSState(
        NSSettings(db_url=db_url, bind="127.0.0.1:9", data_dir=tmp_path),
        engine,
        database.sessionmaker(engine),
    )
    try:
        with state.hub.watch_run(5) as five, state.hub.watch_run(6) as six:
            # When status for runs 5 and 7 is applied in a transaction
            async with state.session() as session:
                runs_changed(session, [5, 7, 5])
                # Then nobody is woken before it commits
                assert not five.is_set()
            # and run 5's followers are once it has, not run 6's
            assert five.is_set() and not six.is_set()

            # When a transaction for run 6 rolls back, its followers are not woken
            with pytest.raises(Rollback):
                async with state.session() as session:
                    runs_changed(session, [6])
                    raise Rollback
            assert not six.is_set()

        # A session opened without NSState (a benchmark's) wakes nobody and does not fail
        async with database.sessionmaker(engine)() as plain:
            runs_changed(plain, [5])
    finally:
        await engine.dispose()
