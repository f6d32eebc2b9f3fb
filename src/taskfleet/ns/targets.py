"""A run's targets minus its exclusions (SPEC section 2, "Run").

Targets and exclusions are both names of collections or computers (``collection:NAME``
and ``computer:ID`` say which); both are resolved when the run starts, the run keeps
them as given, and its instances are the computers that were left.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import InvalidInput, NotFound
from taskfleet.ns import collections as collections_
from taskfleet.ns import computers
from taskfleet.storage.models import Collection

MAX_EXCLUDE = 10_000


async def excluded_ids(session: AsyncSession, exclude: Sequence[str]) -> set[int]:
    """The computers the exclusions name; an unknown name is a 404 naming ``exclude``."""
    if len(exclude) > MAX_EXCLUDE:
        raise InvalidInput(f"at most {MAX_EXCLUDE} exclusions", field="exclude")
    found: set[int] = set()
    for name in exclude:
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput(
                "an exclusion is a non-empty collection or computer name", field="exclude"
            )
        if not name.startswith("computer:"):
            collection = await session.scalar(
                select(Collection).where(Collection.name == name.removeprefix("collection:"))
            )
            if collection is not None:
                found.update(m.id for m in await collections_.member_refs(session, collection))
                continue
        try:
            if name.startswith("collection:"):
                raise NotFound(name)
            found.add((await computers.find(session, name)).id)
        except NotFound:
            raise NotFound(
                f"exclusion {name!r}: no collection or computer of that name; "
                "'taskfleet collection list' and 'taskfleet computer list' show them",
                field="exclude",
            ) from None
    return found


async def without(
    session: AsyncSession, chosen: list[collections_.Member], exclude: Sequence[str]
) -> list[collections_.Member]:
    """``chosen`` minus the computers ``exclude`` names; none left is a 400."""
    if not exclude:
        return chosen
    excluded = await excluded_ids(session, exclude)
    left = [member for member in chosen if member.id not in excluded]
    if not left:
        raise InvalidInput("the targets minus the exclusions hold no computers", field="exclude")
    return left
