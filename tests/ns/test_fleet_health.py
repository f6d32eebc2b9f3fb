"""The dashboard's fleet at a glance, read by the NS (ns.fleet_health), on SQLite and
PostgreSQL alike."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.ns import fleet_health
from taskfleet.ns.agent_config import AgentConfig
from taskfleet.storage.models import Computer, TaskServer
from tests.ns.seeded import seeded

NOW = 1_000_000.0
DAY = 86_400.0


async def _seed(session: AsyncSession) -> None:
    contacts = {"fresh": NOW - 60, "stale": NOW - 10 * DAY, "never": None}
    for name, contact in (*contacts.items(), ("relay", None)):
        session.add(Computer(name=name, hardware_id=f"hw-{name}", enrolled_at=1.0,
                                 last_contact=contact))  # fmt: skip
    await session.flush()
    relay = await session.scalar(Computer.__table__.select().where(Computer.name == "relay"))
    session.add(TaskServer(computer_id=relay, name="ts", url="http://x",
                               credential_hash="x", registered_at=1.0))  # fmt: skip


def run(db_url: str, check: Any) -> Any:
    return seeded(db_url, _seed, lambda session, _: check(session))


def test_computers_are_counted_by_their_last_contact_and_task_servers_left_out(
    db_url: str,
) -> None:
    async def check(session: Any) -> None:
        # When the fleet is read with the default agent configuration
        fleet = await fleet_health.of_fleet(session, AgentConfig(), now=NOW)
        # Then the task server's computer is not counted, and the others are by contact
        assert (fleet.total, fleet.seen, fleet.never) == (3, 1, 1)
        assert [c.name for c in fleet.not_seen] == ["stale"]

    run(db_url, check)
