"""Options a run takes besides its task and targets, shared by ``run`` and ``schedule add``:
exclusions, maintenance windows, completion requirements, and when it starts."""

from __future__ import annotations

import datetime
from typing import Annotated, Any

import typer

from taskfleet.cli.client import fail
from taskfleet.cli.when import age_seconds

Exclude = Annotated[
    list[str] | None,
    typer.Option(help="collection or computer to leave out of the targets; repeatable"),
]
IgnoreWindows = Annotated[
    bool,
    typer.Option(help="deliver now even to computers outside their maintenance windows"),
]
MinWait = Annotated[
    str | None,
    typer.Option(help="completion: wait at least this long (30s, 10m, 2h) for min count/share"),
]
MaxWait = Annotated[
    str | None, typer.Option(help="completion: the run is complete after this long at most")
]
MinCount = Annotated[
    int | None, typer.Option(help="completion: complete once this many computers are done")
]
MinShare = Annotated[
    float | None,
    typer.Option(help="completion: complete once this share (0.9 = 90 %) of computers is done"),
]
At = Annotated[
    str | None,
    typer.Option(help="start at this time instead of now (ISO 8601, e.g. 2026-11-28T22:00)"),
]
Cron = Annotated[
    str | None, typer.Option(help="start on this cron schedule, e.g. '0 3 * * *' (03:00 daily)")
]
Timezone = Annotated[
    str, typer.Option(help="time zone of --at and --cron (IANA name, e.g. Europe/Berlin)")
]


def plan_body(
    exclude: list[str] | None,
    ignore_windows: bool,
    min_wait: str | None,
    max_wait: str | None,
    min_count: int | None,
    min_share: float | None,
) -> dict[str, Any]:
    """The API body's fields for these options (the NS checks them again)."""
    requirements: dict[str, Any] = {}
    if min_wait is not None:
        requirements["min_wait_s"] = age_seconds(min_wait, "--min-wait")
    if max_wait is not None:
        requirements["max_wait_s"] = age_seconds(max_wait, "--max-wait")
    if min_count is not None:
        requirements["min_count"] = min_count
    if min_share is not None:
        requirements["min_share"] = min_share
    return {
        "exclude": exclude or [],
        "ignore_windows": ignore_windows,
        "requirements": requirements,
    }


def timing_body(at: str | None, cron: str | None, timezone: str) -> dict[str, Any]:
    """``at`` or ``cron`` for ``/api/schedules``; the NS refuses a time in the past."""
    if (at is None) == (cron is None):
        fail("give exactly one of --at (a time) or --cron (recurring)")
    if at is not None:
        try:
            datetime.datetime.fromisoformat(at.strip())
        except ValueError:
            fail(f"--at {at!r}: give a time like 2026-11-28T22:00 (ISO 8601)")
        return {"at": at.strip(), "timezone": timezone}
    return {"cron": cron, "timezone": timezone}


def when(at: float | None) -> str:
    """A moment for people, in UTC."""
    if at is None:
        return ""
    stamp = datetime.datetime.fromtimestamp(at, datetime.UTC)
    return stamp.strftime("%Y-%m-%d %H:%M:%S UTC")


def completion_text(run: dict[str, Any]) -> str:
    """'complete: min_count at ...' or 'open', from a run summary."""
    if not run.get("complete"):
        return "open"
    return f"complete: {run.get('ended_by')} at {when(run.get('ended_at'))}"
