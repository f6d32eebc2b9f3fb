"""Reading the audit log (ns.audit_queries), shared by the console and GET /api/audit, on
SQLite and PostgreSQL alike."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import InvalidInput
from taskfleet.ns import audit_queries, like
from taskfleet.storage.models import AuditEntry
from tests.ns.seeded import seeded

SEED = [  # (actor, action, target), oldest first
    ("alice", "collection.create", "web"),
    ("bob", "collection.add", "web"),
    ("alice", "site.create", "paris"),
    ("bob", "site_x.create", "lyon"),
    ("carol", "100%.done", "x"),
]


async def _seed(session: AsyncSession) -> None:
    for i, (actor, action, target) in enumerate(SEED):
        session.add(
                AuditEntry(at=float(i), actor=actor, action=action, target=target,
                           detail={"i": i})
            )  # fmt: skip


def run(db_url: str, check: Any) -> Any:
    return seeded(db_url, _seed, lambda session, _: check(session))


def actions(rows: list[Any]) -> list[str]:
    return [r.action for r in rows]


def test_filters_by_actor_target_and_the_beginning_of_the_action(db_url: str) -> None:
    async def check(session: Any) -> None:
        # When the log is read with each filter
        by_actor = await audit_queries.entries(session, actor="alice")
        by_action = await audit_queries.entries(session, action="collection.")
        by_target = await audit_queries.entries(session, target="web", actor="bob")
        # Then each finds its entries, newest first, with their detail
        assert actions(by_actor) == ["site.create", "collection.create"]
        assert actions(by_action) == ["collection.add", "collection.create"]
        assert [(r.action, r.detail) for r in by_target] == [("collection.add", {"i": 1})]
        assert await audit_queries.count(session, action="site") == 2

    run(db_url, check)


def test_wildcards_in_the_action_filter_match_literally(db_url: str) -> None:
    async def check(session: Any) -> None:
        # When the action filter holds LIKE's wildcards
        # Then "_" and "%" match only themselves
        assert actions(await audit_queries.entries(session, action="site_")) == ["site_x.create"]
        assert actions(await audit_queries.entries(session, action="100%")) == ["100%.done"]
        assert await audit_queries.count(session, action="%") == 0
        assert await audit_queries.count(session, action="\\") == 0

    run(db_url, check)


def test_pages_and_the_list_of_actions(db_url: str) -> None:
    async def check(session: Any) -> None:
        # When the log is read a page at a time
        first = await audit_queries.entries(session, limit=2)
        second = await audit_queries.entries(session, limit=2, offset=2)
        # Then the pages follow each other, and every action is offered once, sorted
        assert actions(first) == ["100%.done", "site_x.create"]
        assert actions(second) == ["site.create", "collection.add"]
        assert await audit_queries.count(session) == len(SEED)
        assert await audit_queries.actions(session) == sorted({a for _, a, _ in SEED})

    run(db_url, check)


def test_a_nul_in_a_filter_is_refused(db_url: str) -> None:
    async def check(session: Any) -> None:
        with pytest.raises(InvalidInput):
            await audit_queries.entries(session, actor="a\x00b")

    run(db_url, check)


def test_like_escapes_its_wildcards_and_its_escape_character() -> None:
    assert like.literal("a%b_c\\d") == "a\\%b\\_c\\\\d"
    assert like.containing("50%") == "%50\\%%"
    assert like.starting_with("x_") == "x\\_%"
