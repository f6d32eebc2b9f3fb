"""Replies of the fleet API (``ns.api_fleet``): task servers, computers, audit entries,
typed for the OpenAPI document.

FastAPI validates a reply against its type and drops keys the type lacks, so a key added
to a reply must be added here too (``tests/ns/test_api_shape.py`` checks that every reply
has a schema). A computer is a TypedDict, not a model: ``ns.computer_views`` builds it as
a dict literal that mypy checks key by key, and an admin's copy has keys a viewer's lacks
(``NotRequired``: absent, not null, for viewers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, NotRequired

from pydantic import Field
from typing_extensions import TypedDict

from taskfleet.ns.registry import TaskServerView

# --- task servers ------------------------------------------------------------------------


@dataclass
class TaskServerApproval:
    """A task server just approved or revoked (R1)."""

    name: str
    approval: str  # approved, revoked


@dataclass
class ConfiguredTaskServer(TaskServerView):
    """A task server after an admin set its client limit or heartbeat period."""

    # Only when the period in effect is short enough that its heartbeats look stale (R2);
    # absent otherwise, never null.
    warning: Annotated[str | None, Field(exclude_if=lambda v: v is None)] = None


# --- computers ---------------------------------------------------------------------------


class ComputerRow(TypedDict):
    """A computer as lists show it (``ns.computer_views.view``)."""

    id: int
    name: str
    addresses: list[str]
    os: str
    agent_version: str
    interpreters: list[str]
    facts: dict[str, Any]  # what its agent reports (ns.enrolment)
    inventory: dict[str, Any]  # the last inventory's measurements (ns.inventory)
    inventory_at: float | None
    last_contact: float | None
    task_server: str | None  # its name, "notification server", or None (unassigned)
    assign_step: str | None
    assign_reason: str | None
    assigned_at: float | None
    # For admins only: what an enrolment claims it by, and when it was reset (and not
    # enrolled again since).
    hardware_id: NotRequired[str]
    reset_at: NotRequired[float | None]


class ComputerRun(TypedDict):
    """One of a computer's recent instances."""

    run: int  # the run's id
    task: str  # its task's or job's name
    state: str
    return_code: int | None
    finished_at: float | None


class ComputerDetail(ComputerRow):
    """One computer (``GET /api/computers/{key}``): its collections and recent runs too."""

    collections: list[str]
    runs: list[ComputerRun]  # newest first


@dataclass
class ComputerPage:
    total: int  # computers matching the search, on every page
    computers: list[ComputerRow]


# --- audit -------------------------------------------------------------------------------


@dataclass
class AuditRow:
    at: float
    actor: str  # a user's name, agent:<id>, taskserver:<name>
    action: str  # e.g. collection.create, token.revoke
    target: str
    detail: dict[str, Any]  # by action: what was changed, and how
