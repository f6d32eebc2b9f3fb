"""Commands for the work: tasks and runs (the policy and agent configuration: cli.policy)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from taskfleet.cli import lifecycle, parameters, run_options, schedules
from taskfleet.cli.client import Api, Context, fail
from taskfleet.cli.output import console, emit_json, table
from taskfleet.protocol.messages import InstanceState

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
ScriptOpt = Annotated[str | None, typer.Option(help="the script text")]
ScriptFileOpt = Annotated[Path | None, typer.Option(help="read the script from this file")]

task = typer.Typer(help="Tasks: run-script tasks and the built-in ones.")


def _api(ctx: typer.Context) -> Api:
    obj: Context = ctx.obj
    return obj.api()


def _script(script: str | None, script_file: Path | None) -> str | None:
    """The script of --script-file when given (read now: a clear error if it cannot
    be), else that of --script."""
    if script_file is None:
        return script
    try:
        return script_file.read_text()
    except OSError as exc:
        fail(f"cannot read {script_file}: {exc.strerror}")


@task.command("create")
def task_create(
    ctx: typer.Context,
    name: str,
    script: ScriptOpt = None,
    script_file: ScriptFileOpt = None,
    interpreter: Annotated[
        str, typer.Option(help="sh, bash, python, pwsh, powershell or cmd")
    ] = "sh",
    timeout: Annotated[float, typer.Option(help="seconds before the script is killed")] = 600.0,
    parameter: parameters.ParameterOpt = None,
    parameters_file: parameters.ParametersFileOpt = None,
    workdir: parameters.WorkdirOpt = None,
    env: parameters.EnvOpt = None,
    success_codes: parameters.SuccessCodesOpt = None,
    run_as: parameters.RunAsOpt = None,
    retries: lifecycle.RetriesOpt = 0,
    retry_backoff: lifecycle.RetryBackoffOpt = "10s",
    json: JsonOpt = False,
) -> None:
    """Create a run-script task; its script may use {{computer.name}}, {{computer.ip}},
    {{run.id}}, {{param.NAME}} and {{fact.NAME}} (docs/work-model.md, "Parameters")."""
    if (script is None) == (script_file is None):
        fail("give the script with exactly one of --script or --script-file")
    script = _script(script, script_file)
    body: dict[str, Any] = {
        "name": name,
        "script": script,
        "interpreter": interpreter,
        "timeout_s": timeout,
    }
    body |= parameters.script_options(workdir, env, success_codes, run_as)
    body["parameters"] = parameters.declarations(parameter, parameters_file) or []
    body |= lifecycle.retries_body(retries, retry_backoff)
    result = _api(ctx).post("/api/tasks", body)
    if json:
        return emit_json(result)
    typer.echo(f"task {result['name']} created (id {result['id']})")


@task.command("edit")
def task_edit(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(metavar="TASK", help="task name or id")],
    name: Annotated[str | None, typer.Option(help="a new name")] = None,
    script: ScriptOpt = None,
    script_file: ScriptFileOpt = None,
    interpreter: Annotated[str | None, typer.Option(help="sh, bash, python, pwsh, ...")] = None,
    timeout: Annotated[float | None, typer.Option(help="seconds before it is killed")] = None,
    parameter: parameters.ParameterOpt = None,
    parameters_file: parameters.ParametersFileOpt = None,
    workdir: parameters.WorkdirOpt = None,
    env: parameters.EnvOpt = None,
    success_codes: parameters.SuccessCodesOpt = None,
    run_as: parameters.RunAsOpt = None,
    json: JsonOpt = False,
) -> None:
    """Change a run-script task; what is not given stays. --parameter or --parameters-file
    replace every declared parameter (a secret default is kept when left as shown)."""
    api = _api(ctx)
    current = api.get(f"/api/tasks/{quote(key, safe='')}")
    script = _script(script, script_file)
    body = dict(current["params"])
    body |= {"name": name or current["name"], "timeout_s": timeout or current["timeout_s"]}
    body |= {k: current[k] for k in ("retries", "retry_backoff_s") if k in current}  # kept
    body |= {k: v for k, v in (("script", script), ("interpreter", interpreter)) if v is not None}
    body |= parameters.script_options(workdir, env, success_codes, run_as)
    declared = parameters.declarations(parameter, parameters_file)
    if declared is not None:
        body["parameters"] = declared
    result = api.put(f"/api/tasks/{quote(key, safe='')}", body)
    if json:
        return emit_json(result)
    typer.echo(f"task {result['name']} saved")


@task.command("list")
def task_list(ctx: typer.Context, json: JsonOpt = False) -> None:
    rows = _api(ctx).get("/api/tasks")
    if json:
        return emit_json(rows)
    table(
        "Tasks",
        ["id", "name", "type", "interpreter", "timeout"],
        [
            [
                t["id"],
                t["name"],
                t["type"],
                t["params"].get("interpreter", ""),
                f"{t['timeout_s']:g}s",
            ]
            for t in rows
        ],
    )


@task.command("show")
def task_show(ctx: typer.Context, key: str, json: JsonOpt = False) -> None:
    t = _api(ctx).get(f"/api/tasks/{quote(key, safe='')}")
    if json:
        return emit_json(t)
    console.print(f"[bold]{t['name']}[/] ({t['type']}, timeout {t['timeout_s']:g}s)")
    if "script" in t["params"]:
        console.print(f"interpreter: {t['params']['interpreter']}")
        parameters.show_options(t["params"])
        console.print(t["params"]["script"], markup=False, highlight=False)


STATE_ORDER = [s.value for s in InstanceState]


def counts_text(counts: dict[str, int]) -> str:
    return "  ".join(f"{s} {counts[s]}" for s in STATE_ORDER if counts.get(s))


def print_run(run: dict[str, Any]) -> None:
    table(
        f"Run {run['id']}: {run['task']} on {', '.join(run['targets'])}, "
        f"reporting {run.get('report', '?')} - {counts_text(run['counts'])}",
        ["computer", "state", "rc", "output"],
        [
            [
                i["computer"],
                i["state"] + (f" ({i['reason']})" if i.get("reason") else ""),
                i["return_code"],
                (i["output"] or "").strip()[-300:],
            ]
            for i in run["instances"]
        ],
    )
    if run.get("exclude"):
        console.print(f"excluded: {', '.join(run['exclude'])}")
    console.print(run_options.completion_text(run))


FOLLOW_WAIT_S = 10.0  # each long poll's wait; the NS answers at once when the counts change


def wait_for(api: Api, run_id: int, timeout: float, quiet: bool) -> dict[str, Any]:
    """Follow the run by long poll (``/api/runs/{id}/wait``) until it is done or ``timeout``."""
    deadline = time.monotonic() + timeout
    version = ""
    with Progress(
        TextColumn("run {task.fields[run]}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} done"),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
        transient=False,
    ) as progress:
        bar = progress.add_task("run", total=None, run=run_id, counts="")
        while True:
            left = max(0.0, deadline - time.monotonic())
            run: dict[str, Any] = api.get(
                f"/api/runs/{run_id}/wait",
                params={"since": version, "timeout": min(FOLLOW_WAIT_S, left)},
            )
            version = run["version"]
            done = sum(n for s, n in run["counts"].items() if InstanceState(s).terminal)
            progress.update(
                bar, total=run["total"], completed=done, counts=counts_text(run["counts"])
            )
            # Complete by its requirements (all done, when it has none): ns.completion.
            if run["done"] or run.get("complete") or time.monotonic() >= deadline:
                break
    full: dict[str, Any] = api.get(f"/api/runs/{run_id}")
    return full


def run_command(
    ctx: typer.Context,
    task_name: Annotated[str, typer.Argument(metavar="TASK", help="task name or id")],
    target: Annotated[list[str], typer.Option(help="collection or computer; repeatable")],
    wait: Annotated[
        bool, typer.Option(help="show live progress until every computer is done")
    ] = False,
    timeout: Annotated[
        float, typer.Option(help="with --wait: give up after this many seconds")
    ] = 3600.0,
    exclude: run_options.Exclude = None,
    ignore_windows: run_options.IgnoreWindows = False,
    min_wait: run_options.MinWait = None,
    max_wait: run_options.MaxWait = None,
    min_count: run_options.MinCount = None,
    min_share: run_options.MinShare = None,
    at: run_options.At = None,
    cron: run_options.Cron = None,
    timezone: run_options.Timezone = "UTC",
    report: Annotated[
        str,
        typer.Option(
            help="live: computers report each status at once (default); "
            "buffered: every Send Status Interval (gentler on servers, results later)"
        ),
    ] = "live",
    param: parameters.ParamOpt = None,
    expires_in: lifecycle.ExpiresIn = None,
    expires_at: lifecycle.ExpiresAt = None,
    json: JsonOpt = False,
) -> None:
    """Run a task on collections and/or computers, now, at a time or on a schedule."""
    if report not in ("live", "buffered"):
        fail(f"--report {report!r}: give live or buffered")
    live = report == "live"
    api = _api(ctx)
    plan = run_options.plan_body(exclude, ignore_windows, min_wait, max_wait, min_count, min_share)
    expiry = lifecycle.expiry_body(expires_in, expires_at)
    # Warns how many targets lack the interpreter; asks for ask-at-run-time values.
    values = parameters.prepare_run(api, task_name, target, exclude, param)
    if at is not None or cron is not None:  # a schedule ('taskfleet schedule' shows it)
        if "expires_at" in expiry:
            fail("--expires-at applies to a run started now; give a schedule --expires-in, "
                 "counted from each of its runs' start")  # fmt: skip
        timing = run_options.timing_body(at, cron, timezone)
        body = {**timing, **plan, "live": live, "params": values, **expiry}
        schedules.add(api, task_name, target, body, json)
        return
    body = {"task": task_name, "targets": target, "live": live, **plan, "params": values}
    body.update(expiry)
    run = api.post("/api/runs", body)
    if not wait:
        if json:
            return emit_json(run)
        typer.echo(
            f"run {run['id']} started on {run['total']} computers, reporting {report}; "
            f"'taskfleet run-status {run['id']}'"
        )
        return
    result = wait_for(api, run["id"], timeout, quiet=json)
    if json:
        emit_json(result)
    else:
        print_run(result)
    if not result["done"] and not result.get("complete"):
        fail(f"run {run['id']} not finished after {timeout:g}s")
    if result.get("ended_by") not in (None, "all_done"):  # ended by a requirement
        if any(result["counts"].get(s) for s in ("Failed", "TimedOut", "Canceled", "Expired")):
            raise typer.Exit(1)
    elif result["counts"].get("Succeeded", 0) != result["total"]:
        raise typer.Exit(1)


def run_status(ctx: typer.Context, run_id: int, json: JsonOpt = False) -> None:
    """A run's per-state counts and every computer's result."""
    run = _api(ctx).get(f"/api/runs/{run_id}")
    if json:
        return emit_json(run)
    print_run(run)
