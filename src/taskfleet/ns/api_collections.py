"""Admin API for collections, addressed by id: a name may hold any character (``/``, ``?``,
``#``, ``%``), so a name is never part of a path; ``GET /api/collections?name=`` finds one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from taskfleet.ns import collections as collections_
from taskfleet.ns import computers
from taskfleet.ns.auth import Administrator, Viewer
from taskfleet.ns.collection_replies import (
    CollectionDetail,
    CollectionView,
    Member,
    MembersChanged,
    collection_view,
)
from taskfleet.ns.openapi import errors
from taskfleet.ns.state import ns_state
from taskfleet.protocol.fields import MAX_ID, LongText, Name, bounded_list

router = APIRouter(prefix="/api", tags=["collections"])
MAX_MEMBERS_PER_CALL = 10_000
CollectionId = Annotated[int, Path(ge=1, le=MAX_ID, description="the collection's id")]


@dataclass
class CollectionRequest:
    name: Name
    description: LongText = ""
    # Checked by ns.rules.validate_rules, which names the rule at fault.
    rules: dict[str, Any] = field(default_factory=dict)


@dataclass
class MembersRequest:
    # Names or ids (``42``, ``computer:42``) of computers.
    computers: Annotated[list[Name], bounded_list(MAX_MEMBERS_PER_CALL)]


@router.get("/collections")
async def list_collections(
    request: Request,
    _: Viewer,
    name: Annotated[Name | None, Query(description="only the collection of this name")] = None,
) -> list[CollectionView]:
    async with ns_state(request).session() as session:
        counts = await collections_.counts(session)
        rows = await collections_.listed(session, name)
        return [collection_view(c, counts.get(c.id, 0)) for c in rows]


@router.post("/collections", status_code=201, responses=errors(404, 409))
async def create_collection(
    request: Request, body: CollectionRequest, admin: Administrator
) -> CollectionView:
    """Create a collection; the rules may include or exclude other collections by name."""
    async with ns_state(request).session() as session:
        collection = await collections_.create(
            session, body.name, body.description, body.rules, admin.name
        )
        return collection_view(collection, 0)


@router.get("/collections/{collection_id}")
async def show_collection(
    request: Request, collection_id: CollectionId, _: Viewer
) -> CollectionDetail:
    async with ns_state(request).session() as session:
        collection = await collections_.by_id(session, collection_id)
        members = await collections_.members(session, collection)
        return CollectionDetail(
            collection.id, collection.name, collection.builtin, collection.description,
            collection.rules, [Member(m.id, m.name) for m in members],
        )  # fmt: skip


async def _members(
    request: Request, collection_id: int, body: MembersRequest, actor: str, add: bool
) -> MembersChanged:
    state = ns_state(request)
    async with state.session() as session:
        collection = await collections_.by_id(session, collection_id)
        found = [await computers.find(session, key) for key in body.computers]
        await collections_.set_static(session, collection, found, add, actor)
        return MembersChanged(collection.id, collection.name, [c.name for c in found])


@router.post("/collections/{collection_id}/members", responses=errors(409))
async def add_members(
    request: Request, collection_id: CollectionId, body: MembersRequest, admin: Administrator
) -> MembersChanged:
    """Add computers (names or ids) as static members."""
    return await _members(request, collection_id, body, admin.name, add=True)


@router.post("/collections/{collection_id}/members/remove", responses=errors(409))
async def remove_members(
    request: Request, collection_id: CollectionId, body: MembersRequest, admin: Administrator
) -> MembersChanged:
    return await _members(request, collection_id, body, admin.name, add=False)
