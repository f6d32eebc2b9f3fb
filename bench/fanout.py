"""Run-now to a whole fleet: how long until every computer has Succeeded (issue 7 goals).

One scenario per invocation, on 127.0.0.1 only, everything it starts stopped by
PID at the end:

1. a real NS on a fresh SQLite file or a fresh PostgreSQL database, ``--ts`` real
   task servers, approved, each with ``--client-limit`` (agents/ts rounded up), and a
   Task Servers policy ``Simulated computers -> ts-1, ts-2, ...`` (so each takes its share);
2. ``taskfleet simulate`` with ``--agents`` simulated agents (real protocol, real HTTP,
   one process): they enrol, are assigned, open their notification channels; then it
   runs a task on them and follows it at the NS until every instance ended;
3. prints the simulator's report: enrol+assign rate, and the run's timeline
   (tickled / fetched / done: p50, p99, max seconds after the run started) and the
   time until the NS counted every instance done. With ``--restart-ts`` it then
   SIGTERMs task server 1 under its connected agents, starts it again, runs a second
   task and reports how long its agents took to reconnect and finish.

    .venv/bin/python bench/fanout.py --agents 1000 --ts 1 --store sqlite
    .venv/bin/python bench/fanout.py --agents 10000 --ts 2 --store postgres

Bounded: the simulator gives up after ``--timeout`` seconds; agents' startup window
is ``--startup-window`` seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from taskfleet.cli.launcher import Launcher, free_port, wait_http, wait_until
from taskfleet.protocol.transport import parse_credential

SIMULATED = "Simulated computers"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def create_pg_database() -> tuple[str, str]:
    import asyncio

    import asyncpg  # the NS's own driver; only needed for the PostgreSQL store

    name = f"fanout_{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        conn = await asyncpg.connect(PG_ADMIN.replace("postgresql", "postgres"))
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()

    asyncio.run(create())
    return name, f"postgresql://postgres@127.0.0.1:5432/{name}"


def drop_pg_database(name: str) -> None:
    import asyncio

    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(PG_ADMIN.replace("postgresql", "postgres"))
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()

    asyncio.run(drop())


class Fanout:
    def __init__(self, root: Path, args: argparse.Namespace, db_url: str) -> None:
        self.root, self.args, self.db_url = root, args, db_url
        self.launcher = Launcher(root / "logs")
        self.ns_url = f"http://127.0.0.1:{free_port()}"
        self.api: httpx.Client | None = None
        self.ts_ports: dict[str, int] = {}
        self.ts_procs: dict[str, Any] = {}
        self.ts_token = ""

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        assert self.api is not None
        response = self.api.request(method, path, json=body)
        if response.status_code >= 400:
            raise SystemExit(f"{method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None

    def start_ns(self) -> None:
        ns = self.launcher.start(
            "ns",
            "ns",
            "serve",
            "--db",
            self.db_url,
            "--bind",
            self.ns_url.removeprefix("http://"),
            "--data-dir",
            str(self.root / "ns"),
            "--insecure-http",  # hand-made agents speak plain HTTP
        )
        wait_http(f"{self.ns_url}/hello", ns, timeout=60)
        credential = parse_credential((self.root / "ns" / "admin.credential").read_text())
        assert credential is not None
        self.credential = str(credential)
        self.api = httpx.Client(base_url=self.ns_url, headers=credential.header, timeout=120)

    def start_ts(self, name: str, limit: int) -> None:
        if not self.ts_token:
            self.ts_token = self.admin("POST", "/api/tokens", {"kind": "taskserver"})["token"]
        port = self.ts_ports.setdefault(name, free_port())
        proc = self.launcher.start(
            name,
            "taskserver",
            "serve",
            "--ns",
            self.ns_url,
            "--bind",
            f"127.0.0.1:{port}",
            "--data-dir",
            str(self.root / name),
            "--insecure-http",  # hand-made agents speak plain HTTP
            "--token",
            self.ts_token,
            "--name",
            name,
            "--client-limit",
            str(limit),
        )
        wait_http(f"http://127.0.0.1:{port}/hello", proc, timeout=60)
        self.ts_procs[name] = proc

    def approve(self, name: str) -> None:
        self.admin("POST", f"/api/taskservers/{name}/approve")

        def available() -> bool:
            rows = {r["name"]: r for r in self.admin("GET", "/api/taskservers")}
            return bool(rows.get(name, {}).get("available"))

        wait_until(available, 30, f"{name} available")

    def set_up(self) -> str:
        self.start_ns()
        names = [f"ts-{i + 1}" for i in range(self.args.ts)]
        limit = math.ceil(self.args.agents / self.args.ts)
        for name in names:
            self.start_ts(name, limit)
            self.approve(name)
        # The simulated computers (the task servers are computers too, without agents).
        self.admin(
            "POST", "/api/collections", {"name": SIMULATED, "rules": {"name_pattern": "sim-*"}}
        )
        self.admin(
            "POST",
            "/api/documents/policy/draft/entries",
            {"entry": {"collection": SIMULATED, "task_servers": names}},
        )
        self.admin("POST", "/api/documents/policy/apply")
        for task in ("fanout-1", "fanout-2"):
            self.admin("POST", "/api/tasks", {"name": task, "script": "true"})
        token: str = self.admin("POST", "/api/tokens", {"kind": "agent"})["token"]
        return token

    def simulate(self, token: str, tasks: list[str], state_dir: Path) -> dict[str, Any]:
        cmd = [
            sys.executable,
            "-m",
            "taskfleet",
            "simulate",
            "--ns",
            self.ns_url,
            "--agents",
            str(self.args.agents),
            "--state-dir",
            str(state_dir),
            "--startup-window",
            str(self.args.startup_window),
            *(arg for task in tasks for arg in ("--run", task)),
            "--between",
            str(self.args.restart_pause),
            "--target",
            SIMULATED,
            "--timeout",
            str(self.args.timeout),
            "--connect-timeout",
            str(self.args.timeout),
            "--json",
        ]
        env = {**os.environ, "TASKFLEET_TOKEN": token, "TASKFLEET_CREDENTIAL": self.credential}
        sim = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        profiler = threading.Thread(target=self.profile_run, args=(tasks[-1], sim.pid), daemon=True)
        if self.args.profile:
            profiler.start()
        stdout, stderr = sim.communicate(timeout=self.args.timeout * 3)
        if self.args.profile:
            profiler.join(self.args.profile + 30)
        if sim.returncode != 0:
            raise SystemExit(f"simulate failed ({sim.returncode}):\n{stderr[-3000:]}")
        result: dict[str, Any] = json.loads(stdout)
        return result

    def profile_run(self, task: str, simulator_pid: int) -> None:
        """Once the run of ``task`` exists, py-spy every server for --profile seconds."""
        assert self.api is not None
        deadline = time.monotonic() + self.args.timeout
        while time.monotonic() < deadline:
            runs = self.api.get("/api/runs", params={"limit": 1}).json()["runs"]
            if runs and runs[0]["task"] == task:
                break
            time.sleep(0.05)
        pids = {"ns": self.launcher.procs[0].pid, "simulator": simulator_pid}
        pids.update({name: proc.pid for name, proc in self.ts_procs.items()})
        spies = [
            subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(pid)]
                + ["-d", str(round(self.args.profile)), "-r", "100", "--format", "speedscope"]
                + ["-o", str(self.root / f"profile-{name}-{task}.json")],
                stdout=subprocess.DEVNULL,
                stderr=open(self.root / "logs" / f"py-spy-{name}.log", "ab"),  # noqa: SIM115
            )
            for name, pid in pids.items()
        ]
        for spy in spies:
            spy.wait()
        print(f"profiles written to {self.root}", file=sys.stderr, flush=True)

    def memory_when_connected(self, memory: dict[str, Any]) -> None:
        """Each task server's memory growth per connected agent, once the first run starts
        (every agent connected, its notification channel open)."""
        base = {name: pss_kib(proc.pid) for name, proc in self.ts_procs.items()}
        deadline = time.monotonic() + self.args.timeout
        while time.monotonic() < deadline and not self.admin("GET", "/api/runs")["runs"]:
            time.sleep(0.2)
        for name, proc in self.ts_procs.items():
            connections = established(self.ts_ports[name])
            grown = pss_kib(proc.pid) - base[name]
            memory[name] = {
                "connections": connections,
                "pss_growth_mib": round(grown / 1024, 1),
                "kib_per_connection": round(grown / connections, 1) if connections else None,
            }

    def restart_ts_after_first_run(self, restart: dict[str, Any]) -> None:
        """Once run 1 is done: SIGTERM ts-1 under its connected agents and start it again."""
        deadline = time.monotonic() + self.args.timeout
        while time.monotonic() < deadline:
            runs = self.admin("GET", "/api/runs")["runs"]
            if runs and runs[-1]["id"] == 1 and runs[-1]["done"]:
                break
            time.sleep(0.2)
        time.sleep(self.args.restart_pause / 2)  # halfway between the runs
        proc = self.ts_procs["ts-1"]
        started = time.monotonic()
        self.launcher.stop(proc, timeout=60)
        restart["stop_seconds"] = round(time.monotonic() - started, 2)
        self.start_ts("ts-1", math.ceil(self.args.agents / self.args.ts))
        restart["restart_seconds"] = round(time.monotonic() - started, 2)
        restart["at_s"] = round(time.time(), 1)


def pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def established(port: int) -> int:
    """Server-side TCP connections on ``port`` in state ESTABLISHED (01), from /proc."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":
            count += 1
    return count


def restart_load(report: dict[str, Any], restart: dict[str, Any], pause: float) -> dict[str, Any]:
    """Requests per second to the task servers: the mean of the quiet time between run 1
    and the restart (steady: agents polling and renewing channels) and the busiest
    second from the restart until the second run starts."""
    series = report["requests_by_second"]
    counts: list[int] = series["ts"]
    restart_at = int(restart["at_s"] - restart["restart_seconds"] - series["started_at"])
    # The restart begins pause/2 after run 1 ended; run 2 starts pause/2 after that.
    second_run_at = restart_at + int(pause / 2) - 1
    before = counts[restart_at - int(pause / 2) + 10 : restart_at - 1] or [0]
    after = counts[restart_at:second_run_at] or [0]
    steady = round(sum(before) / len(before))  # the mean: renewals come every channel wait
    peak = max(after)
    return {"steady": steady, "peak": peak, "ratio": round(peak / steady, 2) if steady else None}


def raise_open_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--ts", type=int, default=1)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--startup-window", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--goal", type=float, default=0, help="say whether the run met this (s)")
    parser.add_argument(
        "--restart-ts",
        action="store_true",
        help="after the first run, restart ts-1 under its agents, then run again",
    )
    parser.add_argument(
        "--restart-pause", type=float, default=90.0, help="seconds between the two runs"
    )
    parser.add_argument(
        "--profile",
        type=float,
        default=0,
        help="py-spy the servers for this long once the run starts (needs --keep)",
    )
    args = parser.parse_args()
    raise_open_files()
    root = Path(tempfile.mkdtemp(prefix="taskfleet-fanout-"))
    pg_name = None
    if args.store == "postgres":
        pg_name, db_url = create_pg_database()
    else:
        db_url = f"sqlite:///{root}/ns.db"
    bench = Fanout(root, args, db_url)
    try:
        token = bench.set_up()
        started = time.monotonic()
        restart: dict[str, Any] = {}
        memory: dict[str, Any] = {}
        watcher = threading.Thread(target=bench.memory_when_connected, args=(memory,), daemon=True)
        watcher.start()
        tasks = ["fanout-1"]
        if args.restart_ts:
            tasks.append("fanout-2")
            threading.Thread(
                target=bench.restart_ts_after_first_run, args=(restart,), daemon=True
            ).start()
        first = bench.simulate(token, tasks, root / "sim")
        first["restart"] = restart
        watcher.join()
        first["task_server_memory"] = memory
        first["wall_seconds"] = round(time.monotonic() - started, 1)
        print(json.dumps({"scenario": vars(args), "first_run": first}, indent=2))
        run = first["runs"][0] if first.get("runs") else {}
        print(
            f"\nRESULT agents={args.agents} ts={args.ts} store={args.store} "
            f"assign_per_s={first['assign_per_s']} run_all_done_s={run.get('seconds')} "
            f"counts={run.get('counts')} done_p50={run['timeline']['done'].get('p50')} "
            f"done_p99={run['timeline']['done'].get('p99')}",
            flush=True,
        )
        if args.goal:
            took = run.get("seconds") or float("inf")
            verdict = (
                f"met ({took} s)"
                if run.get("done") and took < args.goal
                else f"MISSED by {took - args.goal:.1f} s ({took / args.goal:.1f}x)"
            )
            print(f"GOAL every computer Succeeded in < {args.goal:g} s: {verdict}", flush=True)
        for name, figures in memory.items():
            print(
                f"MEMORY {name} connections={figures['connections']} "
                f"pss_growth_mib={figures['pss_growth_mib']} "
                f"kib_per_connection={figures['kib_per_connection']}",
                flush=True,
            )
        if args.restart_ts:
            rates = restart_load(first, restart, args.restart_pause)
            runs = first["runs"]
            print(
                f"RESTART ts-1 stop_s={restart.get('stop_seconds')} "
                f"back_s={restart.get('restart_seconds')} run1_counts={runs[0]['counts']} "
                f"run2_counts={runs[1]['counts']} run2_all_done_s={runs[1]['seconds']} "
                f"ts_requests_per_s steady={rates['steady']} peak={rates['peak']} "
                f"peak_over_steady={rates['ratio']} "
                f"failovers={first['counters'].get('failovers', 0)}",
                flush=True,
            )
    finally:
        bench.launcher.stop_all()
        if bench.api is not None:
            bench.api.close()
        if pg_name:
            drop_pg_database(pg_name)
        if not args.keep:
            subprocess.run(["rm", "-rf", str(root)], check=False)
        else:
            print(f"kept {root}")


if __name__ == "__main__":
    main()
