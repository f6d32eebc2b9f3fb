"""The agent's idle footprint: memory (PSS, RSS) and CPU of real, enrolled, idle agents.

Starts a real NS on 127.0.0.1 (SQLite, in a temporary directory), enrols N agents
(the NS serves them itself: there are no task servers), lets them settle, then
samples every agent process over an idle window:

- PSS, RSS and USS (private: Private_Clean + Private_Dirty) from
  /proc/PID/smaps_rollup at the end of the window, and how much USS grew over it;
- CPU time (utime + stime) from /proc/PID/stat at the start and the end of the
  window: CPU % = CPU seconds used / window seconds.

PSS shares each shared page among the processes that map it (here: the other
agents, the NS and this script share libpython and libc), so an agent alone on
a computer has a PSS between its USS (what each more agent costs) and its RSS.

The agents are started the ways an agent really runs, in turn:
``taskfleet agent run`` (the installed console script), ``python -m taskfleet
agent run`` and ``python -m taskfleet.agent`` (what an agent re-executes itself
as after a restart-agent task). ``--agents 3`` (the default) measures each once.

What the agent imports (only the protocol, its own code, httpx, cryptography and
the standard library) is checked by the test suite: ``tests/test_import_graph.py``.

Linux only. It stops only the processes it started, by PID.

    .venv/bin/python bench/agent_idle.py [--agents 3] [--window 30] [--settle 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from taskfleet.cli.launcher import Launcher, Proc, free_port, wait_http, wait_until

TARGET_PSS_MIB = 25.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class EntryPoint:
    label: str
    command: list[str]  # what comes before the agent's own options


@dataclass
class Sample:
    pss_kib: int
    rss_kib: int
    uss_kib: int
    cpu_s: float


@dataclass
class Result:
    name: str
    entry: str
    pid: int
    pss_mib: float
    rss_mib: float
    uss_mib: float
    uss_growth_mib: float
    cpu_pct: float


def entry_points() -> list[EntryPoint]:
    script = Path(sys.executable).parent / "taskfleet"
    if not script.exists():
        found = shutil.which("taskfleet")
        if found is None:
            raise SystemExit("agent_idle: the 'taskfleet' console script is not installed")
        script = Path(found)
    return [
        EntryPoint(
            "taskfleet agent run",
            [str(script), "agent", "run"],
        ),
        EntryPoint(
            "python -m taskfleet agent run",
            [sys.executable, "-m", "taskfleet", "agent", "run"],
        ),
        EntryPoint(
            "python -m taskfleet.agent",
            [sys.executable, "-m", "taskfleet.agent"],
        ),
    ]


def start(launcher: Launcher, name: str, cmd: list[str]) -> Proc:
    """Like ``Launcher.start`` but for any command; stopped by ``launcher.stop_all``."""
    launcher.workdir.mkdir(parents=True, exist_ok=True)
    log = launcher.workdir / f"{name}.log"
    with open(log, "ab") as fh:
        popen = subprocess.Popen(
            cmd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    proc = Proc(name, cmd, log, popen)
    launcher.procs.append(proc)
    return proc


def sample(pid: int) -> Sample:
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB":
            fields[key] = int(parts[0])
    stat = Path(f"/proc/{pid}/stat").read_text()
    rest = stat[stat.rindex(")") + 2 :].split()  # fields from 3 (state) on
    utime, stime = int(rest[11]), int(rest[12])  # fields 14 and 15
    uss = fields["Private_Clean"] + fields["Private_Dirty"]
    return Sample(fields["Pss"], fields["Rss"], uss, (utime + stime) / CLK_TCK)


def measure(args: argparse.Namespace, root: Path, launcher: Launcher) -> list[Result]:
    port = free_port()
    ns_url = f"http://127.0.0.1:{port}"
    ns = launcher.start(
        "ns",
        "ns",
        "serve",
        "--db",
        f"sqlite:///{root / 'ns.db'}",
        "--bind",
        f"127.0.0.1:{port}",
        "--data-dir",
        str(root / "ns"),
        "--insecure-http",  # hand-made agents speak plain HTTP
    )
    wait_http(f"{ns_url}/hello", ns, timeout=60)
    credential = (root / "ns" / "admin.credential").read_text().strip()
    admin = httpx.Client(
        base_url=ns_url, headers={"Authorization": f"Bearer {credential}"}, timeout=10
    )
    with admin:
        reply = admin.post("/api/tokens", json={"kind": "agent", "label": "agent-idle"})
        reply.raise_for_status()
        token = reply.json()["token"]

        entries = entry_points()
        agents: list[tuple[Proc, EntryPoint]] = []
        for i in range(1, args.agents + 1):
            entry = entries[(i - 1) % len(entries)]
            name = f"idle-{i}"
            cmd = [
                *entry.command,
                "--ns",
                ns_url,
                "--state-dir",
                str(root / "agents" / name),
                "--token",
                token,
                "--name",
                name,
                "--startup-window",
                "0",
                "--insecure-http",
            ]
            agents.append((start(launcher, name, cmd), entry))
        names = {proc.name for proc, _ in agents}

        def all_assigned() -> bool:
            dead = [p.name for p, _ in agents if not p.alive()]
            if dead:
                raise RuntimeError(f"agents exited: {dead}")
            reply = admin.get("/api/computers", params={"search": "idle-", "limit": 1000})
            rows = [r for r in reply.json()["computers"] if r["name"] in names]
            return len(rows) == len(names) and all(r["assign_step"] for r in rows)

        try:
            wait_until(all_assigned, 60, f"{args.agents} agents to enrol and be assigned")
        except TimeoutError:
            for proc, _ in agents:
                print(f"--- {proc.name} log ---\n{proc.output()[-1500:]}", file=sys.stderr)
            raise
    print(f"{args.agents} agents enrolled and assigned; settling {args.settle:g}s", flush=True)
    time.sleep(args.settle)

    print(f"sampling over an idle window of {args.window:g}s", flush=True)
    first = {proc.pid: sample(proc.pid) for proc, _ in agents}
    started = time.monotonic()
    time.sleep(args.window)
    last = {proc.pid: sample(proc.pid) for proc, _ in agents}
    elapsed = time.monotonic() - started
    dead = [proc.name for proc, _ in agents if not proc.alive()]
    if dead:
        raise RuntimeError(f"agents exited during the window: {dead}")

    results = []
    for proc, entry in agents:
        a, b = first[proc.pid], last[proc.pid]
        results.append(
            Result(
                proc.name,
                entry.label,
                proc.pid,
                b.pss_kib / 1024,
                b.rss_kib / 1024,
                b.uss_kib / 1024,
                (b.uss_kib - a.uss_kib) / 1024,
                100 * (b.cpu_s - a.cpu_s) / elapsed,
            )
        )
    return results


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def print_table(results: list[Result], window: float) -> None:
    resolution = 100 / CLK_TCK / window
    print(f"\nIdle footprint over a {window:g}s window")
    print(f"(CPU % of one core; one clock tick over the window is {resolution:.3f} %)\n")
    head = f"{'agent':8} {'entry point':31} {'PID':>7} {'PSS MiB':>8} {'RSS MiB':>8}"
    head += f" {'USS MiB':>8} {'USS growth':>10} {'CPU %':>6}"
    print(head)
    print("-" * len(head))
    for r in results:
        print(
            f"{r.name:8} {r.entry:31} {r.pid:>7} {r.pss_mib:>8.1f} {r.rss_mib:>8.1f}"
            f" {r.uss_mib:>8.1f} {r.uss_growth_mib:>+10.2f} {r.cpu_pct:>6.2f}"
        )
    print("-" * len(head))
    groups = {"mean": results}
    for r in results:
        groups.setdefault(f"mean, {r.entry}", []).append(r)
    if len(groups) == 2:  # a single entry point: its mean is the mean
        groups = {"mean": results}
    for label, rows in groups.items():
        print(
            f"{label:48} {mean([r.pss_mib for r in rows]):>8.1f}"
            f" {mean([r.rss_mib for r in rows]):>8.1f}"
            f" {mean([r.uss_mib for r in rows]):>8.1f}"
            f" {mean([r.uss_growth_mib for r in rows]):>+10.2f}"
            f" {mean([r.cpu_pct for r in rows]):>6.2f}"
        )
    pss = mean([r.pss_mib for r in results])
    verdict = "within" if pss <= TARGET_PSS_MIB else "above"
    print(f"\nmean PSS {pss:.1f} MiB: {verdict} the {TARGET_PSS_MIB:g} MiB target")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=3, help="agent processes (default 3)")
    p.add_argument("--window", type=float, default=30.0, help="idle window, seconds (default 30)")
    p.add_argument("--settle", type=float, default=10.0, help="wait before sampling (default 10)")
    args = p.parse_args()
    if not 1 <= args.agents <= 50:
        p.error("--agents must be between 1 and 50")
    if not 1 <= args.window <= 600 or not 0 <= args.settle <= 300:
        p.error("--window must be 1..600 and --settle 0..300 seconds")
    if not Path("/proc/self/smaps_rollup").exists():
        p.error("needs Linux /proc/PID/smaps_rollup")

    root = Path(tempfile.mkdtemp(prefix="taskfleet-agent-idle-"))
    launcher = Launcher(root / "logs")
    try:
        results = measure(args, root, launcher)
    except (TimeoutError, RuntimeError, OSError, httpx.HTTPError) as exc:
        print(f"agent_idle: {exc}", file=sys.stderr)
        return 2
    finally:
        launcher.stop_all()
        shutil.rmtree(root, ignore_errors=True)
    print_table(results, args.window)
    return 0


if __name__ == "__main__":
    sys.exit(main())
