"""A job's plan, made when its run starts: restart-agent and power-control steps are
planned like any step; only a restart no client job could ever go on after is refused."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import InvalidInput
from taskfleet.ns import job_plans, jobs, tasks
from taskfleet.storage import database, migrate


def scenario(db_url: str, body: Callable[[AsyncSession], Awaitable[None]]) -> None:
    async def go() -> None:
        engine = database.create_engine(db_url)
        try:
            await migrate.upgrade(engine)
            async with database.sessionmaker(engine)() as session, session.begin():
                await tasks.ensure_builtins(session)  # "Restart agent"
                await tasks.create(session, "install", "run-script", {"script": "true"}, 60, "a")
                power = {"action": "restart", "delay_s": 0, "message": "patched"}
                await tasks.create(session, "reboot", "power-control", power, 60, "a")
                later = {**power, "action": "shutdown", "delay_s": 3600}
                await tasks.create(session, "off in an hour", "power-control", later, 60, "a")
                await body(session)
        finally:
            await engine.dispose()

    asyncio.run(go())


@pytest.mark.parametrize("kind", ["client", "server"])
def test_restart_agent_and_power_control_steps_are_planned_like_any_step(
    db_url: str, kind: str
) -> None:
    async def body(session: AsyncSession) -> None:
        # Given "install; restart the agent; restart the computer; install"
        steps = [{"task": "install"}, {"task": "Restart agent"}, {"task": "reboot"},
                 {"task": "install"}]  # fmt: skip
        job = await jobs.create(session, "Patch", kind, steps, 1800, "admin")
        # When a run of it is made, Then its plan holds every step, with its task type
        made = await job_plans.make(session, job)
        planned = [(s["name"], s["task_type"]) for s in made.plan["steps"]]
        assert planned == [
            ("install", "run-script"),
            ("Restart agent", "restart-agent"),
            ("reboot", "power-control"),
            ("install", "run-script"),
        ]
        assert made.plan["steps"][2]["params"]["action"] == "restart"

    scenario(db_url, body)


def test_a_client_job_that_could_never_go_on_after_its_restart_is_refused(db_url: str) -> None:
    async def body(session: AsyncSession) -> None:
        # Given a client job of 30 minutes whose step shuts the computer down in an hour
        steps = [{"task": "install"}, {"task": "off in an hour"}]
        short = await jobs.create(session, "Too short", "client", steps, 1800, "admin")
        # When a run of it is made, Then it is refused, saying why and what to change
        with pytest.raises(InvalidInput) as refused:
            await job_plans.make(session, short)
        assert "step 2" in refused.value.message and "shuts down" in refused.value.message
        assert "longer timeout" in refused.value.message
        # As inside a short nested job of a server job (it runs as a client job)
        await jobs.create(session, "Inner", "client", [{"task": "off in an hour"}], 600, "admin")
        outer = await jobs.create(session, "Outer", "server", [{"job": "Inner"}], 7200, "admin")
        with pytest.raises(InvalidInput):
            await job_plans.make(session, outer)
        # But a server job's own step ends once the command is given: any delay does
        direct = [{"task": "off in an hour"}]
        server = await jobs.create(session, "Wave", "server", direct, 600, "admin")
        assert (await job_plans.make(session, server)).plan["steps"][0]["task_type"] == (
            "power-control"
        )
        # And a client job long enough waits for it
        long = await jobs.create(session, "Long", "client", steps, 7200, "admin")
        assert len((await job_plans.make(session, long)).plan["steps"]) == 2

    scenario(db_url, body)
