"""A collection's maintenance windows as the API and the console show and set them
(the windows themselves: ``ns.windows``; holding work until one opens: ``ns.window_hold``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.ns import audit, window_hold
from taskfleet.ns.windows import next_open, parse_all
from taskfleet.protocol.fields import Time
from taskfleet.storage.models import Collection, MaintenanceWindow


@dataclass
class WindowsView:
    collection_id: int
    collection: str
    windows: list[str]
    open_now: bool  # True also when there are no windows: nothing is held
    next_open_at: Time | None  # when the first window opens; None without windows


async def windows_view(session: AsyncSession, collection: Collection) -> WindowsView:
    rows = (
        await session.scalars(
            select(MaintenanceWindow)
            .where(MaintenanceWindow.collection_id == collection.id)
            .order_by(MaintenanceWindow.id)
        )
    ).all()
    windows = [window_hold.to_window(r) for r in rows]
    now = dt.datetime.now(dt.UTC).timestamp()
    opens = next_open(windows, now)
    return WindowsView(
        collection.id,
        collection.name,
        [w.text() for w in windows],
        opens is None or opens <= now,
        opens,
    )


async def set_windows(
    session: AsyncSession, collection: Collection, specs: list[str], actor: str
) -> WindowsView:
    """Replace a collection's windows, audited (``collection.windows``)."""
    windows = parse_all(specs)
    await session.execute(
        delete(MaintenanceWindow).where(MaintenanceWindow.collection_id == collection.id)
    )
    for w in windows:
        session.add(
            MaintenanceWindow(
                collection_id=collection.id, start_day=w.start_day, start_s=w.start_s,
                end_day=w.end_day, end_s=w.end_s, timezone=w.timezone,
            )
        )  # fmt: skip
    await session.flush()
    window_hold.forget(session)
    audit.record(
        session, actor, "collection.windows", collection.name, windows=[w.text() for w in windows]
    )
    return await windows_view(session, collection)
