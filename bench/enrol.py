"""Enrolment and assignment under a herd: how many computers per second one NS process takes
(issue 7 goal: >= 500/s on PostgreSQL; after a power cut 100,000 computers re-ask).

One scenario per invocation, on 127.0.0.1 only, everything it starts stopped by PID:

1. a real NS on a fresh SQLite file or PostgreSQL database, one real task server,
   approved, with room for every agent, and the policy ``Simulated computers -> ts-1``;
2. "first": ``taskfleet simulate --agents N --startup-window W`` with a state directory:
   every agent enrols, asks the NS for its task server and opens its channel;
3. "re-ask": the same fleet again (same state directory), as after a power cut: every
   agent starts again with the credential it has and asks the NS again.

Per phase: the simulator's ``assign_per_s`` (agents assigned / seconds from its start to
the last assignment: wall clock on this shared machine, simulator, task server and
PostgreSQL included), and the NS process's CPU per agent (``/proc``), which says what one
NS core can take: 1000 / (ms per agent) computers per second.

    .venv/bin/python -P bench/enrol.py --agents 3000 --store postgres
    .venv/bin/python -P bench/enrol.py --agents 3000 --store sqlite --profile 10 --keep
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from taskfleet.cli.launcher import Launcher, Proc, free_port, wait_http, wait_until
from taskfleet.protocol.transport import parse_credential

SIMULATED = "Simulated computers"
PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"


def pg(statement: str) -> None:
    import asyncpg  # the NS's own driver; only needed for the PostgreSQL store

    async def run() -> None:
        conn = await asyncpg.connect(PG_ADMIN)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Bench:
    def __init__(self, root: Path, args: argparse.Namespace, db_url: str) -> None:
        self.root, self.args, self.db_url = root, args, db_url
        self.launcher = Launcher(root / "logs")
        self.ns_url = f"http://127.0.0.1:{free_port()}"
        self.api: httpx.Client | None = None
        self.ns: Proc | None = None

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        assert self.api is not None
        response = self.api.request(method, path, json=body)
        if response.status_code >= 400:
            raise SystemExit(f"{method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None

    def set_up(self) -> str:
        bind = self.ns_url.removeprefix("http://")
        data = str(self.root / "ns")
        self.ns = self.launcher.start(
            "ns",
            "ns",
            "serve",
            "--db",
            self.db_url,
            "--bind",
            bind,
            "--data-dir",
            data,
            "--insecure-http",
        )
        wait_http(f"{self.ns_url}/hello", self.ns, timeout=60)
        credential = parse_credential((self.root / "ns" / "admin.credential").read_text())
        assert credential is not None
        self.api = httpx.Client(base_url=self.ns_url, headers=credential.header, timeout=120)
        port = free_port()
        ts = self.launcher.start(
            "ts-1",
            *("taskserver", "serve", "--ns", self.ns_url, "--bind", f"127.0.0.1:{port}"),
            *("--data-dir", str(self.root / "ts-1"), "--name", "ts-1", "--insecure-http"),
            *("--token", self.admin("POST", "/api/tokens", {"kind": "taskserver"})["token"]),
            *("--client-limit", str(self.args.agents)),
        )
        wait_http(f"http://127.0.0.1:{port}/hello", ts, timeout=60)
        self.admin("POST", "/api/taskservers/ts-1/approve")

        def available() -> bool:
            return any(r["available"] for r in self.admin("GET", "/api/taskservers"))

        wait_until(available, 30, "ts-1 available")
        rules = {"name_pattern": "sim-*"}
        self.admin("POST", "/api/collections", {"name": SIMULATED, "rules": rules})
        entry = {"collection": SIMULATED, "task_servers": ["ts-1"]}
        self.admin("POST", "/api/documents/policy/draft/entries", {"entry": entry})
        self.admin("POST", "/api/documents/policy/apply")
        token: str = self.admin("POST", "/api/tokens", {"kind": "agent"})["token"]
        return token

    def phase(self, name: str, token: str) -> dict[str, Any]:
        assert self.ns is not None
        cmd = [
            *(sys.executable, "-m", "taskfleet", "simulate", "--ns", self.ns_url),
            *("--agents", str(self.args.agents), "--state-dir", str(self.root / "sim")),
            *("--startup-window", str(self.args.startup_window), "--duration", "2"),
            *("--connect-timeout", str(self.args.timeout), "--json"),
        ]
        spy = None
        if self.args.profile:
            spy = subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(self.ns.pid)]
                + ["-d", str(round(self.args.profile)), "-r", "100", "--format", "speedscope"]
                + ["-o", str(self.root / f"profile-ns-{name}.json")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        before = cpu_seconds(self.ns.pid)
        sim = subprocess.run(
            cmd,
            env={**os.environ, "TASKFLEET_TOKEN": token},
            capture_output=True,
            text=True,
            timeout=self.args.timeout * 2,
            check=False,
        )
        cpu = cpu_seconds(self.ns.pid) - before
        if spy is not None:
            spy.wait(self.args.profile + 30)
        if sim.returncode != 0:
            raise SystemExit(f"simulate failed ({sim.returncode}):\n{sim.stderr[-3000:]}")
        report: dict[str, Any] = json.loads(sim.stdout)
        return {
            "assigned": report["assigned"],
            "enrolled": report["enrolled"],
            "assign_seconds": report["assign_seconds"],
            "assign_per_s": report["assign_per_s"],
            "ns_cpu_s": round(cpu, 2),
            "ns_cpu_ms_per_agent": round(1000 * cpu / self.args.agents, 2),
            "errors": report["errors"],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=3000)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="postgres")
    parser.add_argument("--startup-window", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--profile", type=float, default=0, help="py-spy the NS this long in each phase"
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="taskfleet-enrol-"))
    pg_name = None
    if args.store == "postgres":
        pg_name = f"enrol_{uuid.uuid4().hex[:8]}"
        pg(f'CREATE DATABASE "{pg_name}"')
        db_url = f"postgresql://postgres@127.0.0.1:5432/{pg_name}"
    else:
        db_url = f"sqlite:///{root}/ns.db"
    bench = Bench(root, args, db_url)
    try:
        token = bench.set_up()
        phases = {"first": bench.phase("first", token)}
        time.sleep(2)
        phases["re-ask"] = bench.phase("re-ask", token)
        print(json.dumps({"scenario": vars(args), "phases": phases}, indent=2))
        for name, figures in phases.items():
            print(
                f"RESULT {name} agents={args.agents} store={args.store} "
                f"assign_per_s={figures['assign_per_s']} "
                f"ns_cpu_ms_per_agent={figures['ns_cpu_ms_per_agent']} "
                f"one_ns_core_per_s={round(1000 / max(figures['ns_cpu_ms_per_agent'], 0.01))}",
                flush=True,
            )
    finally:
        bench.launcher.stop_all()
        if bench.api is not None:
            bench.api.close()
        if pg_name:
            pg(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
        if not args.keep:
            subprocess.run(["rm", "-rf", str(root)], check=False)
        else:
            print(f"kept {root}")


if __name__ == "__main__":
    main()
