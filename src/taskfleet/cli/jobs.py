"""``taskfleet job create|edit|list|show``: ordered steps of tasks or jobs, with conditions.

A step is written ``--step WHAT[,CONDITION...]``, in order::

    --step install,on-code=3010:continue,on-failure=stop-failed
    --step job:Reboot-and-wait
    --step check,on-failure=goto:1

``WHAT`` is a task's name (or ``task:NAME``) or ``job:NAME``. A condition is
``on-success=ACTION``, ``on-failure=ACTION`` or ``on-code=N:ACTION``; an action is
``continue``, ``stop-succeeded``, ``stop-failed`` or ``goto:K`` (K a step number,
from 1). ``--file job.json`` takes the steps as the API does (``/api/jobs``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from taskfleet.cli.client import Api, Context, fail
from taskfleet.cli.output import emit_json, fields, table

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
Steps = Annotated[
    list[str] | None,
    typer.Option(
        "--step",
        help="a step, in order: WHAT[,on-success=A][,on-failure=A][,on-code=N:A]; "
        "repeatable (see 'taskfleet job --help')",
    ),
]
File = Annotated[
    Path | None, typer.Option("--file", help="a JSON file with 'steps' (and 'kind', 'timeout_s')")
]
Kind = Annotated[
    str | None,
    typer.Option(
        help="client: each computer runs the steps on its own (default); "
        "server: step by step across all targets"
    ),
]
Timeout = Annotated[float | None, typer.Option(help="the whole job's timeout, in seconds")]

job = typer.Typer(help=__doc__.split("\n\n", 1)[0] + "\n\n" + __doc__.split("\n\n", 1)[1])


def _api(ctx: typer.Context) -> Api:
    obj: Context = ctx.obj
    return obj.api()


def parse_step(text: str) -> dict[str, Any]:
    """``install,on-code=3010:continue`` as the API's step object."""
    what, *conditions = [part.strip() for part in text.split(",")]
    if not what:
        fail(f"--step {text!r}: name a task or 'job:NAME' first")
    kind, _, name = (
        what.partition(":") if what.startswith(("task:", "job:")) else ("task", "", what)
    )
    step: dict[str, Any] = {kind: name, "on_code": {}}
    for condition in conditions:
        key, _, action = condition.partition("=")
        key = key.strip().replace("_", "-")
        if key in ("on-success", "on-failure") and action:
            step[key.replace("-", "_")] = action.strip()
        elif key == "on-code" and ":" in action:
            code, _, then = action.partition(":")
            step["on_code"][code.strip()] = then.strip()
        else:
            fail(
                f"--step {text!r}: {condition!r} is not a condition; use on-success=ACTION, "
                "on-failure=ACTION or on-code=N:ACTION"
            )
    return step


def _body(
    name: str, steps: list[str] | None, file: Path | None, kind: str | None, timeout: float | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name}
    if file is not None:
        try:
            loaded = json.loads(file.read_text())
        except OSError as exc:
            fail(f"cannot read {file}: {exc.strerror}")
        except ValueError as exc:
            fail(f"{file} is not JSON: {exc}")
        if not isinstance(loaded, dict) or "steps" not in loaded:
            fail(f"{file} must hold a JSON object with 'steps' (see /api/jobs in the API docs)")
        body.update({k: v for k, v in loaded.items() if k in ("steps", "kind", "timeout_s")})
    if steps:
        body["steps"] = [parse_step(s) for s in steps]
    if "steps" not in body:
        fail("give the job's steps: --step WHAT (repeatable) or --file job.json")
    if kind is not None:
        body["kind"] = kind
    if timeout is not None:
        body["timeout_s"] = timeout
    return body


def _show(found: dict[str, Any]) -> None:
    fields(
        f"job {found['name']}",
        [("id", found["id"]), ("kind", found["kind"]), ("timeout", f"{found['timeout_s']:g} s")],
    )
    table(
        "steps",
        ["#", "runs", "on success", "on failure", "on return code"],
        [
            (
                s["number"],
                f"{s['kind']} {s['name']}",
                s["on_success"],
                s["on_failure"],
                ", ".join(f"{code} → {then}" for code, then in s["on_code"].items()),
            )
            for s in found["steps"]
        ],
    )


@job.command("create")
def job_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="the job's name (tasks and jobs share names)")],
    step: Steps = None,
    file: File = None,
    kind: Kind = None,
    timeout: Timeout = None,
    json: JsonOpt = False,
) -> None:
    """Save a job; its steps are checked whole before anything is stored."""
    created = _api(ctx).post("/api/jobs", _body(name, step, file, kind, timeout))
    if json:
        emit_json(created)
    else:
        typer.echo(
            f"job {created['name']} saved ({len(created['steps'])} steps, {created['kind']})"
        )


@job.command("edit")
def job_edit(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(metavar="JOB", help="the job's name or id")],
    step: Steps = None,
    file: File = None,
    kind: Kind = None,
    timeout: Timeout = None,
    rename: Annotated[str | None, typer.Option(help="a new name")] = None,
    json: JsonOpt = False,
) -> None:
    """Replace a job's steps (and kind, timeout or name); runs already started keep theirs."""
    api = _api(ctx)
    current = api.get(f"/api/jobs/{key}")
    if step or file is not None:
        body = _body(rename or current["name"], step, file, kind, timeout)
    else:  # the same steps, as the API takes them
        kept = [
            {s["kind"]: s["name"], **{k: s[k] for k in ("on_success", "on_failure", "on_code")}}
            for s in current["steps"]
        ]
        body = {"name": rename or current["name"], "steps": kept}
    body.setdefault("kind", kind or current["kind"])
    body.setdefault("timeout_s", timeout if timeout is not None else current["timeout_s"])
    edited = api.put(f"/api/jobs/{key}", body)
    if json:
        emit_json(edited)
    else:
        typer.echo(f"job {edited['name']} saved ({len(edited['steps'])} steps, {edited['kind']})")


@job.command("list")
def job_list(ctx: typer.Context, json: JsonOpt = False) -> None:
    found = _api(ctx).get("/api/jobs")
    if json:
        emit_json(found)
        return
    table(
        "jobs",
        ["id", "name", "kind", "steps", "timeout"],
        [(j["id"], j["name"], j["kind"], len(j["steps"]), f"{j['timeout_s']:g} s") for j in found],
    )


@job.command("show")
def job_show(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(metavar="JOB", help="the job's name or id")],
    json: JsonOpt = False,
) -> None:
    found = _api(ctx).get(f"/api/jobs/{key}")
    if json:
        emit_json(found)
    else:
        _show(found)
