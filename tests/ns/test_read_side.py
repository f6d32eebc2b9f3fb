"""The NS's read side that the console, the API and the CLI share (issue 10): lists and
names of collections, tasks and jobs, a collection found by id or name, and a schedule's
next time, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import NotFound
from taskfleet.ns import collections, jobs, schedules, tasks
from taskfleet.storage.models import Collection, Job, Schedule, Task
from tests.ns.seeded import seeded


async def _seed(session: AsyncSession) -> None:
    for name in ("web/eu", "db", "12"):  # "12": a name that looks like an id
        session.add(Collection(name=name, created_at=1.0))
    for name in ("zip", "backup"):
        session.add(Task(name=name, type="run-script", params={}, created_at=1.0))
    for name in ("nightly", "deploy"):
        session.add(Job(name=name, kind="client", created_at=1.0))


def run(db_url: str, check: Any) -> Any:
    return seeded(db_url, _seed, lambda session, _: check(session))


def test_names_and_lists_are_sorted_by_name(db_url: str) -> None:
    async def check(session: Any) -> None:
        # When each list is read
        names = await collections.names(session)
        # Then each is sorted by name, as the forms offer them
        assert names == sorted(names) and {"web/eu", "db", "12"} <= set(names)
        assert [c.name for c in await collections.listed(session)] == names
        assert [c.name for c in await collections.listed(session, "web/eu")] == ["web/eu"]
        assert await tasks.names(session) == ["backup", "zip"]
        assert [t.name for t in await tasks.listed(session)] == ["backup", "zip"]
        assert await jobs.names(session) == ["deploy", "nightly"]
        assert [j.name for j in await jobs.listed(session)] == ["deploy", "nightly"]

    run(db_url, check)


def test_a_collection_is_found_by_id_else_by_name(db_url: str) -> None:
    async def check(session: Any) -> None:
        web = await collections.get(session, "web/eu")
        # When it is looked up by its id, by its name, or by a name that is no id
        assert (await collections.find(session, str(web.id))).name == "web/eu"
        assert (await collections.find(session, "web/eu")).id == web.id
        # And a number that is no collection's id is taken as a name
        assert 12 not in {c.id for c in await collections.listed(session)}
        assert (await collections.find(session, "12")).name == "12"
        # Then a key that is neither is not found
        with pytest.raises(NotFound):
            await collections.find(session, "nowhere")

    run(db_url, check)


def test_a_schedules_next_time_is_on_its_own_clock() -> None:
    # Given a schedule in Paris's time zone, next at 2026-01-01 00:00 UTC
    schedule = Schedule(timezone="Europe/Paris", next_fire_at=1767225600.0)
    # Then its next time reads on Paris's clock; a schedule that never runs again has none
    assert schedules.first_fire_text(schedule) == "2026-01-01 01:00 Europe/Paris"
    assert schedules.first_fire_text(Schedule(timezone="UTC", next_fire_at=None)) == ""
