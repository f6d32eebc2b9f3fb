"""Searching, sorting and paging computers in the database, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from taskfleet.errors import InvalidInput
from taskfleet.ns import computer_views
from taskfleet.storage import database, migrate
from taskfleet.storage.models import Computer

SEED = [
    ("web-01", "10.1.0.5/24", "Linux 6.1", 300.0),
    ("web-02", "10.1.0.6/24", "Linux 6.1", None),
    ("db_main", "10.2.0.9/24", "Linux 5.10", 100.0),
    ("100%-pc", "192.168.7.7/24", "Windows 11", 200.0),
]


def run(db_url: str, check: Any) -> Any:
    async def go() -> Any:
        engine = database.create_engine(db_url)
        try:
            await migrate.upgrade(engine)
            sessions = database.sessionmaker(engine)
            async with sessions() as session, session.begin():
                for name, address, os_name, contact in SEED:
                    session.add(
                        Computer(name=name, hardware_id=f"hw-{name}", addresses=[address],
                                 os=os_name, enrolled_at=1.0, last_contact=contact)
                    )  # fmt: skip
            async with sessions() as session:
                return await check(session)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def names(found: tuple[int, list[dict[str, Any]]]) -> list[str]:
    return [c["name"] for c in found[1]]


def test_search_by_name_os_and_address(db_url: str) -> None:
    async def check(session: Any) -> None:
        assert names(await computer_views.search(session, "WEB")) == ["web-01", "web-02"]
        assert names(await computer_views.search(session, "windows")) == ["100%-pc"]
        assert names(await computer_views.search(session, "10.2.0.")) == ["db_main"]
        # LIKE wildcards typed by a person are matched literally
        assert names(await computer_views.search(session, "%")) == ["100%-pc"]
        assert names(await computer_views.search(session, "b_m")) == ["db_main"]
        assert (await computer_views.search(session, "nothing-like-it"))[0] == 0

    run(db_url, check)


def test_sort_and_page(db_url: str) -> None:
    async def check(session: Any) -> None:
        # Never-seen computers sort first ascending, last descending
        by_contact = await computer_views.search(session, sort="last_contact")
        assert names(by_contact) == ["web-02", "db_main", "100%-pc", "web-01"]
        newest = await computer_views.search(session, sort="last_contact", descending=True)
        assert names(newest) == ["web-01", "100%-pc", "db_main", "web-02"]
        first = await computer_views.search(session, limit=3)
        second = await computer_views.search(session, limit=3, offset=3)
        assert first[0] == second[0] == 4
        assert names(first) + names(second) == ["100%-pc", "db_main", "web-01", "web-02"]
        with pytest.raises(InvalidInput, match="sort 'hardware_id' must be one of"):
            await computer_views.search(session, sort="hardware_id")

    run(db_url, check)
