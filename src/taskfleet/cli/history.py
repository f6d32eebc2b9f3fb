"""Run history: ``run-list`` with filters, and ``run-output RUN COMPUTER``."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.markup import escape

from taskfleet.cli.client import Api, Context
from taskfleet.cli.output import emit_json, table
from taskfleet.cli.when import moment
from taskfleet.cli.work import counts_text

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def _api(ctx: typer.Context) -> Api:
    obj: Context = ctx.obj
    return obj.api()


def _when(at: float | None) -> str:
    return "" if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def run_list(
    ctx: typer.Context,
    state: Annotated[
        list[str] | None,
        typer.Option(help="runs with a computer in this state (Failed, Running...); repeatable"),
    ] = None,
    task: Annotated[str | None, typer.Option(help="runs of this task (name or id)")] = None,
    target: Annotated[
        str | None, typer.Option(help="runs given this collection, or reaching this computer")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="started since: an age (2h, 7d) or a date (2026-11-25T08:00)")
    ] = None,
    until: Annotated[str | None, typer.Option(help="started before: an age or a date")] = None,
    limit: Annotated[int, typer.Option(help="runs per page, newest first")] = 50,
    before: Annotated[
        int | None, typer.Option(help="the page older than this run (what the last page said)")
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Runs, newest first, filtered by state, task, target and time."""
    params: dict[str, Any] = {"limit": limit}
    if state:
        params["state"] = state
    if task is not None:
        params["task"] = task
    if target is not None:
        params["target"] = target
    if since is not None:
        params["since"] = moment(since, "--since")
    if until is not None:
        params["until"] = moment(until, "--until")
    if before is not None:
        params["before"] = before
    page = _api(ctx).get("/api/runs", params=params)
    if json:
        return emit_json(page)
    table(
        "Runs",
        ["run", "task", "targets", "started", "by", "report", "states"],
        [
            [
                r["id"],
                r["task"],
                ", ".join(r["targets"]),
                _when(r["created_at"]),
                r["created_by"],
                r.get("report", ""),
                counts_text(r["counts"]) + ("" if r["done"] else "  (in progress)"),
            ]
            for r in page["runs"]
        ],
    )
    if page["next_before"] is not None:
        typer.echo(f"older runs: add --before {page['next_before']}")


def run_output(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(metavar="RUN", help="the run's number")],
    computer: Annotated[str, typer.Argument(metavar="COMPUTER", help="computer name or id")],
    json: JsonOpt = False,
) -> None:
    """One computer's whole output of a run, as plain text (pipe it anywhere); with
    --json, also its state, return code, times and a client job's steps. A client job's
    steps come first, as a table: each step's state, return code and first output line."""
    found = _api(ctx).get(f"/api/runs/{run_id}/output/{quote(computer, safe='')}")
    if json:
        return emit_json(found)
    if found.get("steps"):  # an NS before step records sends none
        table(
            f"Run {run_id} on {found['computer']}: steps",
            ["Step", "Name", "State", "Return code", "Output"],
            [_step_row(s) for s in found["steps"]],
        )
    sys.stdout.write(found["output"])
    sys.stdout.flush()


def _step_row(step: dict[str, Any]) -> list[Any]:
    lines = str(step.get("output") or "").splitlines()
    first = lines[0][:60] + ("…" if len(lines) > 1 or len(lines[0]) > 60 else "") if lines else ""
    return [
        step.get("path"),
        escape(str(step.get("name", ""))),
        step.get("state"),
        step.get("return_code"),
        escape(first),
    ]
