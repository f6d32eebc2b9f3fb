"""Job definitions are checked whole when saved, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import Conflict, InvalidInput
from taskfleet.ns import jobs, tasks
from taskfleet.storage import database, migrate
from taskfleet.storage.models import AuditEntry, Job


def scenario(db_url: str, body: Callable[[AsyncSession], Awaitable[None]]) -> None:
    async def go() -> None:
        engine = database.create_engine(db_url)
        try:
            await migrate.upgrade(engine)
            async with database.sessionmaker(engine)() as session, session.begin():
                for name in ("install", "reboot", "check"):
                    await tasks.create(session, name, "run-script", {"script": "true"}, 60, "admin")
                await body(session)
        finally:
            await engine.dispose()

    asyncio.run(go())


STEPS = [
    {"task": "install", "on_code": {"3010": "goto:2"}},
    {"task": "reboot", "on_failure": "stop-failed"},
    {"task": "check", "on_success": "stop-succeeded"},
]


def test_a_job_is_stored_by_ids_and_shown_by_names(db_url: str) -> None:
    async def body(session: AsyncSession) -> None:
        # When an admin saves a three-step client job
        job = await jobs.create(session, "Patch", "client", STEPS, 3600, "admin")
        # Then its steps hold ids, so renaming a task keeps the job whole
        install = await tasks.find(session, "install")
        assert job.steps[0] == {
            "task": install.id,
            "on_success": "continue",
            "on_failure": "stop-failed",
            "on_code": {"3010": "goto:2"},
        }
        await tasks.update(session, install, "install v2", {"script": "true"}, 60, "admin")
        views = await jobs.step_views(session, job)
        assert [(v.number, v.kind, v.name) for v in views] == [
            (1, "task", "install v2"),
            (2, "task", "reboot"),
            (3, "task", "check"),
        ]
        # And the change is audited
        actions = await session.scalars(select(AuditEntry.action))
        assert "job.create" in actions.all()

    scenario(db_url, body)


@pytest.mark.parametrize(
    ("steps", "field"),
    [
        ([], "steps"),
        ("install", "steps"),
        ([{"task": "nope"}], "steps.0.task"),
        ([{"task": "install", "job": "x"}], "steps.0"),
        ([{"task": "install"}, {"task": "check", "on_failure": "goto:3"}], "steps.1.on_failure"),
        ([{"task": "install", "on_code": {"a": "continue"}}], "steps.0.on_code"),
        (["install"], "steps.0"),
    ],
)
def test_a_bad_job_is_refused_naming_the_field_and_nothing_is_stored(
    db_url: str, steps: object, field: str
) -> None:
    async def body(session: AsyncSession) -> None:
        with pytest.raises(InvalidInput) as caught:
            await jobs.create(session, "Bad", "client", steps, 60, "admin")
        assert caught.value.field == field
        assert await session.scalar(select(func.count()).select_from(Job)) == 0

    scenario(db_url, body)


def test_a_job_that_would_contain_itself_is_refused(db_url: str) -> None:
    async def body(session: AsyncSession) -> None:
        # Given job A, and job B that runs A
        a = await jobs.create(session, "A", "client", [{"task": "install"}], 60, "admin")
        await jobs.create(session, "B", "client", [{"job": "A"}, {"task": "check"}], 60, "admin")
        # When A is edited to run B
        with pytest.raises(InvalidInput, match="contain itself") as caught:
            await jobs.update(session, a, "A", "client", [{"job": "B"}], 60, "admin")
        # Then it is refused, and A still holds what it held
        assert caught.value.field == "steps"
        assert "job" not in (await jobs.find(session, "A")).steps[0]
        # and a job cannot run itself directly either
        with pytest.raises(InvalidInput, match="contain itself"):
            await jobs.update(session, a, "A", "client", [{"job": "A"}], 60, "admin")

    scenario(db_url, body)


def test_nesting_is_bounded(db_url: str) -> None:
    async def body(session: AsyncSession) -> None:
        await jobs.create(session, "J1", "server", [{"task": "check"}], 60, "admin")
        for n in range(2, 5):
            await jobs.create(session, f"J{n}", "client", [{"job": f"J{n - 1}"}], 60, "admin")
        with pytest.raises(InvalidInput, match="nest at most"):
            await jobs.create(session, "J5", "client", [{"job": "J4"}], 60, "admin")

    scenario(db_url, body)


@pytest.mark.parametrize(
    ("name", "kind", "timeout", "error", "field"),
    [
        ("install", "client", 60, Conflict, "name"),  # a task's name
        ("", "client", 60, InvalidInput, "name"),
        ("J", "sometimes", 60, InvalidInput, "kind"),
        ("J", "client", 0, InvalidInput, "timeout_s"),
        ("J", "client", float("nan"), InvalidInput, "timeout_s"),
    ],
)
def test_names_kinds_and_timeouts_are_checked(
    db_url: str, name: str, kind: str, timeout: float, error: type[Exception], field: str
) -> None:
    async def body(session: AsyncSession) -> None:
        with pytest.raises(error) as caught:
            await jobs.create(session, name, kind, [{"task": "check"}], timeout, "admin")
        assert caught.value.field == field  # type: ignore[attr-defined]

    scenario(db_url, body)


def test_a_task_cannot_take_a_jobs_name(db_url: str) -> None:
    async def body(session: AsyncSession) -> None:
        await jobs.create(session, "Patch", "client", [{"task": "check"}], 60, "admin")
        with pytest.raises(Conflict, match="share names"):
            await tasks.create(session, "Patch", "run-script", {"script": "true"}, 60, "admin")
        check = await tasks.find(session, "check")
        with pytest.raises(Conflict, match="share names"):
            await tasks.update(session, check, "Patch", {"script": "true"}, 60, "admin")

    scenario(db_url, body)
