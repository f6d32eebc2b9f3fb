"""``taskfleet simulate``: a fleet of simulated agents against a real NS, to size a deployment."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from taskfleet.cli.client import Context, fail
from taskfleet.cli.output import console, emit_json, fields
from taskfleet.errors import TaskfleetError

if TYPE_CHECKING:  # imported when the command runs: aiohttp costs every other command
    from taskfleet.simulator.fleet import SimFleet

STATES = ("waiting", "enrolling", "assigning", "connected", "offline")
WORK = ("tickles", "fetched", "Succeeded", "Failed", "failovers", "restarts")


def simulate(
    ctx: typer.Context,
    agents: Annotated[int, typer.Option(help="how many agents to simulate")] = 100,
    ns: Annotated[str | None, typer.Option(help="NS URL (or TASKFLEET_NS)")] = None,
    token: Annotated[
        str | None,
        typer.Option(help="agent enrolment token (or TASKFLEET_TOKEN, kept out of ps)"),
    ] = None,
    behaviour: Annotated[
        str,
        typer.Option(help="mix of behaviours: succeed, fail, slow, offline, restart, as shares"),
    ] = "succeed",
    prefix: Annotated[str, typer.Option(help="computer names are PREFIX-00001 ...")] = "sim",
    subnet: Annotated[str, typer.Option(help="the agents' addresses come from here")] = (
        "10.200.0.0/16"
    ),
    state_dir: Annotated[
        Path | None, typer.Option(help="keep identities here, to simulate the same fleet again")
    ] = None,
    startup_window: Annotated[
        float, typer.Option(help="seconds over which agents spread first contact (R11)")
    ] = 10.0,
    slow: Annotated[float, typer.Option(help="seconds a 'slow' agent takes per task")] = 20.0,
    offline_for: Annotated[
        float, typer.Option(help="seconds an 'offline' agent stays quiet after assignment")
    ] = 3600.0,
    run: Annotated[
        list[str] | None,
        typer.Option(help="once every agent is connected, run this task on them; repeatable"),
    ] = None,
    between: Annotated[
        float, typer.Option(help="seconds between one --run ending and the next starting")
    ] = 5.0,
    target: Annotated[
        list[str] | None, typer.Option(help="the run's targets (default: All Computers)")
    ] = None,
    connect_timeout: Annotated[
        float, typer.Option(help="give up if agents are not all connected by then (s)")
    ] = 600.0,
    timeout: Annotated[float, typer.Option(help="give up following the run after (s)")] = 600.0,
    duration: Annotated[
        float | None,
        typer.Option(help="without --run: stop after this many seconds (default: Ctrl-C)"),
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Simulate AGENTS agents speaking the real protocol over real HTTP, then print a timeline.

    Each agent enrols, asks the NS for its task server, keeps a notification channel open,
    polls and reports status, with a scripted behaviour instead of scripts. With --run, the
    task runs once all agents are connected, and the report tells when agents were tickled,
    fetched the work and were done (p50/p99/max seconds after the run started).
    """
    obj: Context = ctx.obj
    ns_url = (ns or obj.ns).rstrip("/")
    if not ns_url:
        fail("where is the NS? pass --ns URL or set TASKFLEET_NS")
    if not ns_url.startswith("http://"):
        # Thousands of agents, each with its own key and certificate, are not simulated yet.
        fail(
            f"--ns {ns_url}: the simulator speaks plain HTTP only; run the NS and task servers "
            "with --insecure-http for a simulated fleet"
        )
    token = token or os.environ.get("TASKFLEET_TOKEN", "")
    if not token:
        fail("give an agent enrolment token: --token or TASKFLEET_TOKEN")
    credential = str(obj.credential()) if run else ""
    from taskfleet.simulator import report
    from taskfleet.simulator.behaviour import Mix
    from taskfleet.simulator.fleet import SimFleet, SimOptions

    try:
        options = SimOptions(
            ns_url=ns_url,
            token=token,
            agents=agents,
            mix=Mix.parse(behaviour),
            prefix=prefix,
            subnet=subnet,
            state_dir=state_dir,
            startup_window_s=startup_window,
            slow_s=slow,
            offline_s=offline_for,
        )
        fleet = SimFleet(options)
    except TaskfleetError as exc:
        fail(exc.message)
    plan = _Plan(
        run or [],
        target or ["All Computers"],
        credential,
        connect_timeout,
        timeout,
        duration,
        between,
    )
    try:
        result = _run_event_loop(_simulate(fleet, plan, live=not json and console.is_terminal))
    except TaskfleetError as exc:
        fail(exc.message)
    except KeyboardInterrupt:
        result = {"interrupted": True, **report.summary(fleet)}
    if json:
        emit_json(result)
    else:
        _print(result)


@dataclass
class _Plan:
    tasks: list[str]
    targets: list[str]
    credential: str
    connect_timeout: float
    timeout: float
    duration: float | None
    between: float


def _run_event_loop(coroutine: Any) -> dict[str, Any]:
    try:
        import uvloop  # installed with uvicorn[standard]; thousands of sockets run lighter

        return uvloop.run(coroutine)
    except ImportError:
        return asyncio.run(coroutine)


async def _simulate(fleet: SimFleet, plan: _Plan, live: bool) -> dict[str, Any]:
    from taskfleet.simulator import report

    display = Live(_table(fleet), console=console, refresh_per_second=2) if live else None
    await fleet.start()
    refresher = asyncio.create_task(_refresh(display, fleet)) if display else None
    try:
        if display:
            display.start()
        connected_s = await fleet.wait_connected(plan.connect_timeout)
        result: dict[str, Any] = {"connected_seconds": round(connected_s, 3)}
        if plan.tasks:
            runs = []
            for n, task in enumerate(plan.tasks):
                if n:
                    await asyncio.sleep(plan.between)
                run_id = await report.start_run(fleet, plan.credential, task, plan.targets)
                run = await report.follow_run(fleet, plan.credential, run_id, plan.timeout)
                await asyncio.sleep(0.5)  # the last acknowledgements reach the agents' counters
                keys = ("id", "total", "counts", "done", "seconds")
                runs.append({**{k: run[k] for k in keys}, "timeline": report.timeline(fleet)})
            result["runs"] = runs
            result["run"] = runs[-1]
        elif plan.duration is not None:
            await asyncio.sleep(plan.duration)
        else:
            await asyncio.Event().wait()  # until Ctrl-C
        return {**result, **report.summary(fleet)}
    finally:
        if refresher:
            refresher.cancel()
        if display:
            display.stop()
        await fleet.close()


async def _refresh(display: Live | None, fleet: SimFleet) -> None:
    while display is not None:
        display.update(_table(fleet))
        await asyncio.sleep(0.5)


def _table(fleet: SimFleet) -> Table:
    snapshot = fleet.snapshot()
    table = Table(title=f"taskfleet simulate: {len(fleet.agents)} agents", title_justify="left")
    for name in STATES + WORK:
        table.add_column(name, justify="right")
    table.add_row(*(str(snapshot.get(name, 0)) for name in STATES + WORK))
    return table


def _print(result: dict[str, Any]) -> None:
    pairs: list[tuple[str, Any]] = [
        ("agents", result["agents"]),
        ("behaviours", result["behaviours"]),
        ("enrolled / assigned", f"{result['enrolled']} / {result['assigned']}"),
        ("assigned per second", result["assign_per_s"]),
        ("all connected after", f"{result.get('connected_seconds', '-')} s"),
    ]
    run = result.get("run")
    if run:
        pairs.append(("run", f"{run['id']}: {run['counts']} in {run['seconds']} s at the NS"))
        for step in ("tickled", "fetched", "done"):
            t = result["timeline"][step]
            if t["count"]:
                pairs.append(
                    (step, f"{t['count']}: p50 {t['p50']} s, p99 {t['p99']} s, max {t['max']} s")
                )
    if result["errors"]:
        pairs.append(("errors", result["errors"]))
    fields("simulation", pairs)
