"""``taskfleet schedule add|list|show|pause|resume|remove`` and ``collection windows``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from taskfleet.cli.client import Api, Context, fail
from taskfleet.cli.output import console, emit_json, fields, table
from taskfleet.cli.run_options import (
    At,
    Cron,
    Exclude,
    IgnoreWindows,
    MaxWait,
    MinCount,
    MinShare,
    MinWait,
    Timezone,
    plan_body,
    timing_body,
    when,
)
from taskfleet.cli.when import age_seconds

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
schedule = typer.Typer(
    help="Schedules: a run at a time (--at) or recurring (--cron, in a time zone)."
)


def _api(ctx: typer.Context) -> Api:
    obj: Context = ctx.obj
    return obj.api()


def timing_text(s: dict[str, Any]) -> str:
    if s["cron"]:
        return f"cron '{s['cron']}' {s['timezone']}"
    return f"once at {when(s['at'])}"


def add(
    api: Api, task: str, targets: list[str], body: dict[str, Any], json: bool
) -> dict[str, Any]:
    """Create a schedule; ``body`` holds timing and run options."""
    created: dict[str, Any] = api.post("/api/schedules", {"task": task, "targets": targets, **body})
    if json:
        emit_json(created)
    else:
        typer.echo(
            f"schedule {created['id']} added: {timing_text(created)}; "
            f"first run at {when(created['next_fire_at'])}"
        )
    return created


def params_of(pairs: list[str]) -> dict[str, str]:
    if any("=" not in p for p in pairs):
        fail("--param takes NAME=VALUE")
    return dict(p.split("=", 1) for p in pairs)


@schedule.command("add")
def schedule_add(
    ctx: typer.Context,
    task: Annotated[str, typer.Argument(metavar="TASK", help="task name or id")],
    target: Annotated[list[str], typer.Option(help="collection or computer; repeatable")],
    at: At = None,
    cron: Cron = None,
    timezone: Timezone = "UTC",
    exclude: Exclude = None,
    report: Annotated[
        str, typer.Option(help="live: status at once; buffered: every Send Status Interval")
    ] = "live",
    expires_in: Annotated[
        str | None, typer.Option(help="each run's expiry from its start (2h, 7d); default 7d")
    ] = None,
    ignore_windows: IgnoreWindows = False,
    min_wait: MinWait = None,
    max_wait: MaxWait = None,
    min_count: MinCount = None,
    min_share: MinShare = None,
    param: Annotated[
        list[str] | None, typer.Option(help="NAME=VALUE for a task parameter; repeatable")
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Run TASK at a time or on a cron schedule."""
    if report not in ("live", "buffered"):
        fail(f"--report {report!r}: give live or buffered")
    body = {
        **timing_body(at, cron, timezone),
        **plan_body(exclude, ignore_windows, min_wait, max_wait, min_count, min_share),
        "live": report == "live",
        "params": params_of(param or []),
    }
    if expires_in is not None:
        body["expires_in_s"] = age_seconds(expires_in, "--expires-in")
    add(_api(ctx), task, target, body, json)


@schedule.command("list")
def schedule_list(ctx: typer.Context, json: JsonOpt = False) -> None:
    rows = _api(ctx).get("/api/schedules")
    if json:
        return emit_json(rows)
    table(
        "Schedules",
        ["id", "task", "targets", "when", "next", "state", "fired", "last run"],
        [
            [
                s["id"],
                s["task"],
                ", ".join(s["targets"])
                + (f" minus {', '.join(s['exclude'])}" if s["exclude"] else ""),
                timing_text(s),
                when(s["next_fire_at"]) or "done",
                "paused" if s["paused"] else ("error" if s["last_error"] else "active"),
                s["fired_count"],
                s["last_run_id"] or "",
            ]
            for s in rows
        ],
    )


def _print(s: dict[str, Any]) -> None:
    fields(
        f"Schedule {s['id']}",
        [
            ("task", s["task"]),
            ("targets", ", ".join(s["targets"])),
            ("exclusions", ", ".join(s["exclude"])),
            ("when", timing_text(s)),
            ("next run", when(s["next_fire_at"]) or "none (done)"),
            ("paused", "yes" if s["paused"] else "no"),
            ("reports", "live" if s["live"] else "buffered"),
            ("maintenance windows", "ignored" if s["ignore_windows"] else "respected"),
            ("completion", s["requirements"] or "every computer done"),
            ("parameters", s["params"] or ""),
            ("fired", s["fired_count"]),
            ("last fired", when(s["last_fired_at"])),
            ("last run", s["last_run_id"] or ""),
            ("last error", s["last_error"] or ""),
            ("created", f"{when(s['created_at'])} by {s['created_by']}"),
        ],
    )


@schedule.command("show")
def schedule_show(ctx: typer.Context, schedule_id: int, json: JsonOpt = False) -> None:
    s = _api(ctx).get(f"/api/schedules/{schedule_id}")
    if json:
        return emit_json(s)
    _print(s)


def _set(ctx: typer.Context, schedule_id: int, verb: str, json: bool) -> None:
    s = _api(ctx).post(f"/api/schedules/{schedule_id}/{verb}")
    if json:
        return emit_json(s)
    typer.echo(f"schedule {s['id']} {verb}d; next run {when(s['next_fire_at']) or 'none'}")


@schedule.command("pause")
def schedule_pause(ctx: typer.Context, schedule_id: int, json: JsonOpt = False) -> None:
    """Stop firing until resumed."""
    _set(ctx, schedule_id, "pause", json)


@schedule.command("resume")
def schedule_resume(ctx: typer.Context, schedule_id: int, json: JsonOpt = False) -> None:
    """Fire again, from the next occurrence after now (missed ones are not made up)."""
    _set(ctx, schedule_id, "resume", json)


@schedule.command("remove")
def schedule_remove(ctx: typer.Context, schedule_id: int, json: JsonOpt = False) -> None:
    """Remove a schedule; the runs it started stay."""
    _api(ctx).request("DELETE", f"/api/schedules/{schedule_id}")
    if json:
        return emit_json({"removed": schedule_id})
    typer.echo(f"schedule {schedule_id} removed")


def collection_windows(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="the collection")],
    windows: Annotated[
        list[str] | None,
        typer.Argument(help="e.g. 'Sat 22:00-Sun 04:00 Europe/Berlin'; each one argument"),
    ] = None,
    clear: Annotated[bool, typer.Option(help="remove every window")] = False,
    json: JsonOpt = False,
) -> None:
    """Show or set a collection's weekly maintenance windows: its computers get work only
    while one is open (unless a run is started with --ignore-windows)."""
    api = _api(ctx)
    rows = api.get("/api/collections", params={"name": name})
    if not rows:
        fail(f"no collection named {name!r}; 'taskfleet collection list' shows them")
    path = f"/api/collections/{rows[0]['id']}/windows"
    if windows or clear:
        result = api.put(path, {"windows": list(windows or [])})
    else:
        result = api.get(path)
    if json:
        return emit_json(result)
    if not result["windows"]:
        typer.echo(f"{result['collection']}: no maintenance windows (work is delivered any time)")
        return
    table(
        f"Maintenance windows of {result['collection']}",
        ["window"],
        [[w] for w in result["windows"]],
    )
    state = "open now" if result["open_now"] else f"closed; opens {when(result['next_open_at'])}"
    console.print(state)
