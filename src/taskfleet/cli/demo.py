"""``taskfleet demo``: an NS on SQLite, two task servers, ten agents, one run on all of them."""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from cryptography import x509
from rich.console import Console

from taskfleet.cli.client import Api, fail
from taskfleet.cli.launcher import Launcher, free_port, wait_http, wait_until
from taskfleet.cli.work import print_run, wait_for
from taskfleet.protocol import pki
from taskfleet.protocol.private_file import write_private
from taskfleet.protocol.transport import parse_credential

console = Console()
SCRIPT = (
    'echo "computer $TASKFLEET_COMPUTER ran run $TASKFLEET_RUN '
    'via task server $TASKFLEET_TASK_SERVER"\n'
)


def demo(
    directory: Annotated[Path, typer.Option("--dir", help="working directory (recreated)")] = Path(
        "demo-data"
    ),
    agents: Annotated[int, typer.Option(help="how many agent processes")] = 10,
    once: Annotated[
        bool, typer.Option(help="exit after the run; 0 only if every computer succeeded")
    ] = False,
    port: Annotated[int, typer.Option(help="NS port (0: any free port)")] = 0,
) -> None:
    """Start a whole taskfleet here and run a script on every computer."""
    if not 1 <= agents <= 200:
        fail("--agents must be between 1 and 200")
    if directory.exists():
        shutil.rmtree(directory)
    launcher = Launcher(directory / "logs")
    ok = False
    try:
        ok = _demo(directory.resolve(), launcher, agents, once, port or free_port())
    except (TimeoutError, RuntimeError) as exc:
        console.print(f"[red]demo failed:[/] {exc}")
    except KeyboardInterrupt:
        console.print("interrupted")
    finally:
        launcher.stop_all()
        console.print("all demo processes stopped")
    raise typer.Exit(0 if ok else 1)


def _demo(root: Path, launcher: Launcher, n_agents: int, once: bool, ns_port: int) -> bool:
    ns_url = f"https://127.0.0.1:{ns_port}"
    console.rule("[bold]taskfleet demo")
    console.print(f"notification server on SQLite: {root / 'ns.db'}")
    ns = launcher.start(
        "ns",
        "ns",
        "serve",
        "--db",
        f"sqlite:///{root / 'ns.db'}",
        "--bind",
        f"127.0.0.1:{ns_port}",
        "--data-dir",
        str(root / "ns"),
    )
    wait_http(f"{ns_url}/hello", ns)
    credential_file = root / "ns" / "admin.credential"
    credential = parse_credential(credential_file.read_text())
    assert credential is not None
    # Everything below talks TLS to the NS's own CA; nodes pin it by its fingerprint, as
    # an installer would give it to them.
    ca_dir = root / "ns" / "ca"
    fingerprint = pki.fingerprint(x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes()))
    console.print(f"NS certificate authority: fingerprint [bold]{fingerprint}[/]")
    api = Api(ns_url, credential, ca_dir / "bundle.pem")

    ts_token = api.post("/api/tokens", {"kind": "taskserver", "label": "demo"})["token"]
    servers = {}
    for name in ("ts-east", "ts-west"):
        port = free_port()
        proc = launcher.start(
            name,
            "taskserver",
            "serve",
            "--ns",
            ns_url,
            "--bind",
            f"127.0.0.1:{port}",
            "--data-dir",
            str(root / name),
            "--name",
            name,
            "--heartbeat",
            "2",
            "--ca-fingerprint",
            fingerprint,
            # Never on the command line, where every local user sees it (ps).
            env={"TASKFLEET_TOKEN": ts_token},
        )
        servers[name] = (proc, port)
    for proc, port in servers.values():
        wait_http(f"https://127.0.0.1:{port}/hello", proc)
    api.post("/api/taskservers/ts-east/approve")
    console.print(
        "task servers: [green]ts-east approved[/], "
        "[yellow]ts-west left pending[/] (R1: it may not serve)"
    )

    api.post("/api/collections", {"name": "Demo computers", "rules": {"name_pattern": "demo-pc-*"}})
    api.post(
        "/api/documents/policy/draft/entries",
        {"entry": {"collection": "Demo computers", "task_servers": ["ts-west", "ts-east"]}},
    )
    api.post("/api/documents/policy/apply")
    api.post(
        "/api/documents/agent-config/draft/entries",
        {
            "entry": {
                "collection": "Demo computers",
                "task_request_interval_min": 1,
                "send_status_interval_s": 2,
            }
        },
    )
    api.post("/api/documents/agent-config/apply")
    console.print("policy applied: 'Demo computers' -> ts-west (pending, so skipped), then ts-east")

    agent_token = api.post("/api/tokens", {"kind": "agent", "label": "demo"})["token"]
    token_file = root / "agent.token"  # what an installer leaves beside the agent, 0600
    write_private(token_file, agent_token + "\n")
    for i in range(1, n_agents + 1):
        name = f"demo-pc-{i:02d}"
        launcher.start(
            name,
            "agent",
            "run",
            "--ns",
            ns_url,
            "--state-dir",
            str(root / "agents" / name),
            "--token-file",
            str(token_file),
            "--name",
            name,
            "--startup-window",
            "2",
            "--ca-fingerprint",
            fingerprint,
        )
    console.print(f"started {n_agents} agents; waiting for them to enrol and get a task server")

    def all_assigned() -> bool:
        rows = api.get("/api/computers", params={"search": "demo-pc-", "limit": 1000})["computers"]
        return len(rows) == n_agents and all(r["assign_step"] for r in rows)

    wait_until(all_assigned, 60, f"{n_agents} agents to enrol")
    api.post(
        "/api/tasks", {"name": "Who am I", "script": SCRIPT, "interpreter": "sh", "timeout_s": 60}
    )
    run = api.post("/api/runs", {"task": "Who am I", "targets": ["Demo computers"], "live": True})
    started = time.monotonic()
    result = wait_for(api, run["id"], 120, quiet=False)
    print_run(result)
    ok = bool(result["counts"].get("Succeeded", 0) == n_agents)
    console.print(
        f"{'[green]every computer succeeded' if ok else '[red]not every computer succeeded'}[/] "
        f"in {time.monotonic() - started:.1f}s"
    )
    console.print(f"\nNS URL: [bold]{ns_url}[/]   (API documentation: {ns_url}/docs)")
    password_file = credential_file.parent / "admin.password"
    console.print(
        f"console: [bold]{ns_url}/console/[/]   log in as admin with the password in "
        f"{password_file}"
    )
    console.print(
        f"  (the browser does not know the NS's CA yet: import {ca_dir / 'ca.crt'}, or accept "
        f"the certificate after checking its fingerprint {fingerprint[:16]}...)"
    )
    console.print(f"try:  export TASKFLEET_NS={ns_url} TASKFLEET_CREDENTIAL={credential_file}")
    console.print("      taskfleet computer show demo-pc-01; taskfleet taskserver list")
    if once:
        return ok
    console.print("running until Ctrl-C ...")
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    signal.sigwait(stop_signals)
    return ok
