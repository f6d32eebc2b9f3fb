"""Replies of the collection and site APIs (``ns.api_collections``, ``ns.api_sites``),
for the OpenAPI document.

Each model lists exactly the keys the route has always returned: FastAPI drops keys a
model lacks, so a key added to a reply must be added here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from taskfleet.storage.models import Collection, Site

# --- collections -------------------------------------------------------------------------


@dataclass
class CollectionView:
    id: int
    name: str
    builtin: bool
    description: str
    rules: dict[str, Any]  # as ns.rules.validate_rules checked them
    members: int  # how many computers are in it


@dataclass
class Member:
    id: int
    name: str


@dataclass
class CollectionDetail:
    """One collection (``GET /api/collections/{id}``): its members by name."""

    id: int
    name: str
    builtin: bool
    description: str
    rules: dict[str, Any]
    members: list[Member]


@dataclass
class MembersChanged:
    id: int
    name: str
    changed: list[str]  # the computers added or removed


def collection_view(collection: Collection, members: int) -> CollectionView:
    return CollectionView(
        collection.id, collection.name, collection.builtin, collection.description,
        collection.rules, members,
    )  # fmt: skip


# --- sites -------------------------------------------------------------------------------


@dataclass
class SiteView:
    id: int
    name: str
    subnets: list[str]
    task_servers: list[str]  # names of the task servers that serve it


@dataclass
class SiteSubnets:
    """A site after a subnet was added or removed."""

    id: int
    name: str
    subnets: list[str]


@dataclass
class SiteServer:
    """A site after a task server was made to serve it."""

    id: int
    name: str
    task_server: str


def site_subnets(site: Site) -> SiteSubnets:
    return SiteSubnets(site.id, site.name, site.subnets)
