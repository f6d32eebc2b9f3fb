"""Inventory: what agents report about themselves, stored on their computer.

An agent sends an ``InventoryReport`` at enrolment, every inventory interval of its
agent configuration (``inventory_interval_h``, R5-like, per collection) and when an
Inventory task runs on it. Its facts are stored through the ORM like those an
assignment brings (``computers.apply_facts``), so the flush hooks of
``ns/membership.py`` re-evaluate the computer's dynamic collections in the same
transaction when a fact changed; the measurements that change at every report
(uptime, disk and memory free) go to ``Computer.inventory`` and change no membership.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import Forbidden
from taskfleet.ns import audit, computers
from taskfleet.ns.state import agents_changed
from taskfleet.protocol.messages import InventoryReport, TaskType
from taskfleet.storage.models import Computer, Task

INVENTORY = "Inventory"  # the built-in task


def measurements(report: InventoryReport) -> dict[str, Any]:
    return {
        key: value
        for key, value in (
            ("uptime_s", report.uptime_s),
            ("disk_free_bytes", report.disk_free_bytes),
            ("memory_available_bytes", report.memory_available_bytes),
        )
        if value is not None
    }


async def store(session: AsyncSession, computer_id: int, report: InventoryReport) -> bool:
    """Store a computer's inventory; whether its facts changed (its collections were
    re-evaluated then)."""
    computers.check_facts(report.facts)
    computer = await session.get(Computer, computer_id)
    assert computer is not None  # (the caller authenticated it)
    if report.facts.hardware_id != computer.hardware_id:
        audit.record(
            session,
            f"agent:{computer_id}",
            "agent.forbidden",
            computer.name,
            tried="inventory",
            why="facts name another hardware id",
        )
        raise Forbidden(
            f"this credential is computer {computer_id}'s; the inventory names another "
            "computer's hardware id, so it is refused"
        )
    changed = computers.facts_of(computer) != report.facts
    if changed:
        computers.apply_facts(computer, report.facts)  # flush hooks: ns/membership.py
        # Its collections, so maybe its agent configuration, may have changed.
        agents_changed(session)
    computer.inventory = measurements(report)
    computer.inventory_at = time.time()
    await session.flush()
    return changed


async def ensure_builtin(session: AsyncSession) -> None:
    if await session.scalar(select(Task.id).where(Task.name == INVENTORY)) is None:
        session.add(
            Task(
                name=INVENTORY,
                type=TaskType.INVENTORY,
                params={},
                timeout_s=120,
                builtin=True,
                created_at=time.time(),
                created_by="taskfleet",
            )
        )
