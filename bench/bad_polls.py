"""Bad polls against a task server: what they cost the NS, and the real agents' poll rate.

A poll with an unknown agent id or a wrong secret is one the task server cannot answer
from its agent map. Before ``taskserver.lookups`` each such poll cost an NS round trip
(``GET /api/ts/agents/{id}``); now the NS's negative answers are remembered and lookups
are limited per source address (429 with Retry-After).

One run, on 127.0.0.1 only, everything it starts stopped by PID at the end:

1. a real NS (SQLite, temporary directory) and one real task server, approved and named
   by a Task Servers policy, over plain HTTP (``--insecure-http`` where the tree has it:
   over TLS a poll must also present the named agent's client certificate); ``--agents``
   agents enrolled and assigned through the real agent API, each polling once;
2. a good-poll load (``--connections`` keep-alive connections, each agent's real
   credential in turn, a process of its own) runs all along; its rate is measured for
   ``--duration`` seconds alone (**baseline**), then while another process sends
   ``--bad`` bad polls as fast as ``--bad-connections`` connections allow (**attack**):
   half with random unknown agent ids, half with the real agents' ids and random
   secrets, every one different;
3. for each phase: good polls per second, the NS process's CPU seconds (``/proc``), and
   the agent lookups the NS answered (its ``/metrics``); for the attack, the bad polls'
   statuses and how long they took.

The machine's cores are shared by every process here (nothing is pinned), as on a small
server running an NS and a task server together.

    .venv/bin/python -P bench/bad_polls.py [--agents 200] [--bad 2000] [--duration 10]

It runs unchanged against an earlier tree (put its ``src`` first on ``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from taskfleet.cli.launcher import Launcher, Proc, free_port, wait_http

LOOKUP_ROUTE = "/api/ts/agents/{computer_id}"
SAMPLE_S = 0.25


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the load processes: plain HTTP/1.1 over asyncio streams, keep-alive ---------------


REQUEST = "GET /agent/poll HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {}\r\n\r\n"


async def _request(port: int, conn: list[Any], credential: str) -> int:
    """One poll on ``conn`` ([reader, writer], or empty: connect first); its status."""
    if not conn:
        conn.extend(await asyncio.open_connection("127.0.0.1", port))
    reader, writer = conn
    writer.write(REQUEST.format(credential).encode())
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = re.search(rb"(?i)content-length: *(\d+)", head)
    await reader.readexactly(int(length.group(1)) if length else 0)
    if re.search(rb"(?i)connection: *close", head):
        writer.close()
        conn.clear()
    return status


async def good_load(port: int, credentials: list[str], connections: int, stop: Path) -> None:
    """Poll with real credentials until ``stop`` exists; print (time, polls answered 200)."""
    answered = 0
    timeline: list[tuple[float, int]] = []

    async def one(n: int) -> None:
        nonlocal answered
        conn: list[Any] = []
        i = n
        while not stop.exists():
            status = await _request(port, conn, credentials[i % len(credentials)])
            i += connections
            if status == 200:
                answered += 1

    async def sample() -> None:
        while not stop.exists():
            timeline.append((time.monotonic(), answered))
            await asyncio.sleep(SAMPLE_S)

    await asyncio.gather(sample(), *(one(n) for n in range(connections)))
    timeline.append((time.monotonic(), answered))
    print(json.dumps(timeline))


async def bad_load(port: int, credentials: list[str], count: int, connections: int) -> None:
    """Send ``count`` bad polls, each different; print their statuses and duration."""
    known = [c.rsplit(".", 1)[0] for c in credentials]  # "tf1.agent.<id>"
    statuses: dict[int, int] = {}
    left = list(range(count))
    started = time.monotonic()

    async def one() -> None:
        conn: list[Any] = []
        while left:
            n = left.pop()
            if n % 2:
                credential = f"tf1.agent.{random.randint(10**6, 2**31 - 1)}.{os.urandom(16).hex()}"
            else:
                credential = f"{random.choice(known)}.{os.urandom(16).hex()}"
            status = await _request(port, conn, credential)
            statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(one() for _ in range(connections)))
    print(json.dumps({"seconds": time.monotonic() - started, "statuses": statuses}))


# --- the bench ---------------------------------------------------------------------


class Bench:
    def __init__(self, root: Path, args: argparse.Namespace) -> None:
        self.root, self.args = root, args
        self.launcher = Launcher(root / "logs")
        self.ns_port, self.ts_port = free_port(), free_port()
        self.ns_url = f"http://127.0.0.1:{self.ns_port}"
        self.api: httpx.Client | None = None
        self.ns: Proc | None = None
        self.credentials: list[str] = []
        help_text = subprocess.run(
            [sys.executable, "-m", "taskfleet", "ns", "serve", "--help"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        self.plain = ["--insecure-http"] if "--insecure-http" in help_text else []

    def admin(self, method: str, path: str, body: object = None) -> Any:
        assert self.api is not None
        response = self.api.request(method, path, json=body)
        response.raise_for_status()
        return response.json() if response.content else None

    def start(self) -> None:
        self.ns = self.launcher.start(
            "ns",
            "ns",
            "serve",
            "--db",
            f"sqlite:///{self.root}/ns.db",
            "--bind",
            f"127.0.0.1:{self.ns_port}",
            "--data-dir",
            str(self.root / "ns"),
            *self.plain,
        )
        wait_http(f"{self.ns_url}/hello", self.ns, timeout=60)
        admin = (self.root / "ns" / "admin.credential").read_text().strip()
        self.api = httpx.Client(
            base_url=self.ns_url, headers={"Authorization": f"Bearer {admin}"}, timeout=60
        )
        token = self.admin("POST", "/api/tokens", {"kind": "taskserver"})["token"]
        ts = self.launcher.start(
            "ts",
            "taskserver",
            "serve",
            "--ns",
            self.ns_url,
            "--bind",
            f"127.0.0.1:{self.ts_port}",
            "--data-dir",
            str(self.root / "ts"),
            "--token",
            token,
            "--name",
            "ts-bench",
            *self.plain,
        )
        wait_http(f"http://127.0.0.1:{self.ts_port}/hello", ts)
        self.admin("POST", "/api/taskservers/ts-bench/approve")
        self.admin("POST", "/api/collections", {"name": "Bench", "rules": {"name_pattern": "b-*"}})
        entry = {"collection": "Bench", "task_servers": ["ts-bench"]}
        self.admin("POST", "/api/documents/policy/draft/entries", {"entry": entry})
        self.admin("POST", "/api/documents/policy/apply")

    def enrol(self) -> None:
        token = self.admin("POST", "/api/tokens", {"kind": "agent", "uses": self.args.agents})
        with httpx.Client(base_url=self.ns_url, timeout=60) as ns:
            for n in range(self.args.agents):
                facts = {
                    "name": f"b-{n}",
                    "hardware_id": f"bench-{n}",
                    "addresses": ["127.0.0.1/8"],
                }
                enrolled = ns.post(
                    "/api/agent/enrol", json={"token": token["token"], "facts": facts}
                )
                enrolled.raise_for_status()
                credential = enrolled.json()["credential"]
                headers = {"Authorization": f"Bearer {credential}"}
                assigned = ns.post("/api/agent/assignment", json={"facts": facts}, headers=headers)
                assert assigned.json()["task_server_name"] == "ts-bench", assigned.text
                self.credentials.append(credential)
        with httpx.Client(base_url=f"http://127.0.0.1:{self.ts_port}", timeout=60) as ts:
            for credential in self.credentials:  # the task server knows each one now
                poll = ts.get("/agent/poll", headers={"Authorization": f"Bearer {credential}"})
                assert poll.status_code == 200, poll.text

    def lookups(self) -> float:
        assert self.api is not None
        text = self.api.get("/metrics").text
        total = 0.0
        for line in text.splitlines():
            if line.startswith("taskfleet_ns_requests_total") and LOOKUP_ROUTE in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def figures(self) -> tuple[float, float, float]:
        assert self.ns is not None
        return time.monotonic(), cpu_seconds(self.ns.pid), self.lookups()

    def role(self, *args: str) -> subprocess.Popen[str]:
        creds = self.root / "credentials.json"
        creds.write_text(json.dumps(self.credentials))
        cmd = [sys.executable, "-P", __file__, "--role", args[0], "--port", str(self.ts_port)]
        return subprocess.Popen(
            [*cmd, "--credentials", str(creds), *args[1:]], stdout=subprocess.PIPE, text=True
        )

    def run(self) -> dict[str, Any]:
        stop = self.root / "stop"
        good = self.role("good", "--connections", str(self.args.connections), "--stop", str(stop))
        try:
            time.sleep(2)  # warm up
            t0, cpu0, look0 = self.figures()
            time.sleep(self.args.duration)
            t1, cpu1, look1 = self.figures()
            bad = self.role(
                "bad", "--bad", str(self.args.bad), "--connections", str(self.args.bad_connections)
            )
            bad_out, _ = bad.communicate(timeout=600)
            t2, cpu2, look2 = self.figures()
        finally:
            stop.touch()
        good_out, _ = good.communicate(timeout=60)
        timeline = json.loads(good_out)
        attack = json.loads(bad_out)

        def rate(start: float, end: float) -> float:
            def at(t: float) -> float:
                return min(timeline, key=lambda point: abs(point[0] - t))[1]

            return (at(end) - at(start)) / (end - start)

        return {
            "agents": self.args.agents,
            "bad": self.args.bad,
            "baseline": {
                "seconds": round(t1 - t0, 1),
                "good_per_s": round(rate(t0, t1)),
                "ns_cpu_s": round(cpu1 - cpu0, 2),
                "ns_lookups": int(look1 - look0),
            },
            "attack": {
                "seconds": round(t2 - t1, 1),
                "good_per_s": round(rate(t1, t2)),
                "ns_cpu_s": round(cpu2 - cpu1, 2),
                "ns_lookups": int(look2 - look1),
                "bad_per_s": round(self.args.bad / attack["seconds"]),
                "bad_statuses": attack["statuses"],
            },
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--bad", type=int, default=2000, help="bad polls sent in the attack")
    parser.add_argument("--duration", type=int, default=10, help="seconds of the baseline")
    parser.add_argument("--connections", type=int, default=16, help="of the good-poll load")
    parser.add_argument("--bad-connections", type=int, default=16)
    # The load processes this script starts for itself:
    parser.add_argument("--role", choices=("good", "bad"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--credentials", help=argparse.SUPPRESS)
    parser.add_argument("--stop", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        credentials = json.loads(Path(args.credentials).read_text())
        if args.role == "good":
            asyncio.run(good_load(args.port, credentials, args.connections, Path(args.stop)))
        else:
            asyncio.run(bad_load(args.port, credentials, args.bad, args.connections))
        return 0
    with tempfile.TemporaryDirectory(prefix="taskfleet-bad-polls-") as tmp:
        bench = Bench(Path(tmp), args)
        try:
            bench.start()
            bench.enrol()
            result = bench.run()
        finally:
            bench.launcher.stop_all()
            if bench.api is not None:
                bench.api.close()
    base, attack = result["baseline"], result["attack"]
    print(
        f"baseline: {base['good_per_s']} good polls/s; NS {base['ns_cpu_s']} s CPU in "
        f"{base['seconds']} s, {base['ns_lookups']} lookups\n"
        f"attack:   {attack['good_per_s']} good polls/s while {args.bad} bad polls took "
        f"{attack['seconds']} s ({attack['bad_per_s']}/s, statuses {attack['bad_statuses']}); "
        f"NS {attack['ns_cpu_s']} s CPU, {attack['ns_lookups']} lookups"
    )
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
