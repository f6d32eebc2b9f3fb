"""The CLI for a run's life: its expiry (``run --expires-in/--expires-at``) and
``run-cancel RUN [--computer NAME]`` (ns.cancel, docs/work-model.md)."""

from __future__ import annotations

import datetime
from typing import Annotated, Any

import typer

from taskfleet.cli.client import Context, fail
from taskfleet.cli.output import console, emit_json
from taskfleet.cli.when import age_seconds

ExpiresIn = Annotated[
    str | None,
    typer.Option(help="instances no computer picked up by then end Expired: 2h, 3d (default 7d)"),
]
ExpiresAt = Annotated[
    str | None,
    typer.Option(help="as --expires-in, at a moment: 2026-11-28T22:00 (UTC unless a zone)"),
]


RetriesOpt = Annotated[
    int, typer.Option(help="run a failed script again up to this many times (0-10)")
]
RetryBackoffOpt = Annotated[
    str,
    typer.Option(help="wait this long before the first retry (10s, 1m), doubling each time"),
]


def retries_body(retries: int, backoff: str) -> dict[str, Any]:
    """The task body's retry fields (the NS checks them: ns.task_retries)."""
    return {"retries": retries, "retry_backoff_s": age_seconds(backoff, "--retry-backoff")}


def expiry_body(expires_in: str | None, expires_at: str | None) -> dict[str, Any]:
    """The run body's expiry fields; the NS refuses one in the past (400 naming it)."""
    if expires_in is not None and expires_at is not None:
        fail("give --expires-in or --expires-at, not both")
    if expires_in is not None:
        return {"expires_in_s": age_seconds(expires_in, "--expires-in")}
    if expires_at is not None:
        try:
            at = datetime.datetime.fromisoformat(expires_at.strip())
        except ValueError:
            fail(f"--expires-at {expires_at!r}: give a time like 2026-11-28T22:00 (ISO 8601)")
        if at.tzinfo is None:
            at = at.replace(tzinfo=datetime.UTC)
        return {"expires_at": at.timestamp()}
    return {}


def run_cancel(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(metavar="RUN", help="the run's number")],
    computer: Annotated[
        str | None, typer.Option(help="cancel only this computer's instance (name or id)")
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Cancel a run (or one computer's instance): pending instances are withdrawn,
    running scripts are stopped with their child processes and end Canceled."""
    obj: Context = ctx.obj
    body = {"computer": computer} if computer is not None else {}
    done = obj.api().post(f"/api/runs/{run_id}/cancel", body)
    if json:
        return emit_json(done)
    console.print(
        f"run {run_id}: {done['withdrawn']} pending withdrawn, {done['stopping']} running "
        f"told to stop, {done['finished']} finished already; "
        f"'taskfleet run-status {run_id}' shows them end"
    )
