"""The task server's hot path: "nothing new" polls against a bare endpoint, and channel memory.

One run, on 127.0.0.1 only, with everything it starts stopped by PID at the end:

1. a real NS (SQLite, temporary directory) and one real task server, approved and
   named by a Task Servers policy; ``--agents`` agents enrolled and assigned to it
   through the real agent API (the NS hands each a credential);
2. for each HTTP server (uvicorn, granian) the same task server (same identity)
   is started pinned to CPU 0, every agent polls once (so the task server knows
   them), then wrk, pinned to CPU 1, loads it for ``--duration`` seconds per
   round, alternating the bare ``GET /hello`` and the agent's ``GET /agent/poll``
   with a real credential per request (a Lua script rotates through them);
   the rates are the median over ``--rounds`` rounds, the ratio is poll / hello;
3. then opens one notification channel (``GET /agent/channel?wait=300``, a long
   poll) per agent, checks the task server holds them all open, and prints its
   memory per open channel (RSS and PSS growth / channels).

Needs wrk (``make bench`` installs Debian's package) and ``taskset``. Every load is
bounded by ``--duration`` and ``--rounds``; channels are closed at the end.

    .venv/bin/python bench/poll.py [--agents 10000] [--rounds 3] [--duration 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography import x509

from taskfleet.cli.launcher import Launcher, Proc, free_port, wait_http, wait_until
from taskfleet.protocol import pki
from taskfleet.protocol.transport import parse_credential

SERVERS = ("uvicorn", "granian")
TS_CPU, LOAD_CPU = "0", "1"
LUA = """
local creds = {%s}
local i = 0
request = function()
  i = i %% #creds + 1
  return wrk.format("GET", "%s", {["Authorization"] = "Bearer " .. creds[i]})
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p99_us":%%d,' ..
    '"errors":%%d,"bad_status":%%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


@dataclass
class Load:
    rate: float
    p50_ms: float
    p99_ms: float


def memory_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        fields[key] = int(value.split()[0])
    return {"rss": fields["Rss"], "pss": fields["Pss"]}


def serving_pid(proc: Proc) -> int:
    """The process that runs the app: uvicorn's own, or granian's one forked worker."""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    return int(children[0]) if children else proc.pid


def established_listen(port: int) -> bool:
    """Is something listening on ``port`` (state 0A in /proc/net/tcp)?"""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if int(local.split(":")[1], 16) == port and state == "0A":
            return True
    return False


def established(port: int) -> int:
    """Server-side TCP connections on ``port`` in state ESTABLISHED (01), from /proc."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if int(local.split(":")[1], 16) == port and state == "01":
            count += 1
    return count


class Bench:
    def __init__(self, root: Path, args: argparse.Namespace, tls: bool = False) -> None:
        self.root = root
        self.args = args
        self.tls = tls
        self.scheme = "https" if tls else "http"
        self.launcher = Launcher(root / "logs")
        self.ns_url = f"{self.scheme}://127.0.0.1:{free_port()}"
        self.ts_port = free_port()
        self.credentials: list[str] = []
        # TLS: each agent's certificate and key files, in the order of ``credentials``.
        self.agent_files: list[tuple[Path, Path]] = []
        self.api: httpx.Client | None = None
        self.ts_token = ""
        self.fingerprint = ""
        self.stunnel: subprocess.Popen[bytes] | None = None
        self.stunnel_port = 0

    @property
    def ts_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.ts_port}"

    @property
    def ca_file(self) -> Path:
        return self.root / "ns" / "ca" / "bundle.pem"

    def trust(self) -> list[str]:
        return ["--ca-fingerprint", self.fingerprint] if self.tls else ["--insecure-http"]

    def agent_context(self, n: int) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.load_cert_chain(str(self.agent_files[n][0]), str(self.agent_files[n][1]))
        return ctx

    # --- setting up a fleet ------------------------------------------------------

    def start_ns(self) -> None:
        bind = self.ns_url.split("://", 1)[1]
        ns = self.launcher.start(
            "ns",
            "ns",
            "serve",
            "--db",
            f"sqlite:///{self.root}/ns.db",
            "--bind",
            bind,
            "--data-dir",
            str(self.root / "ns"),
            *([] if self.tls else ["--insecure-http"]),
        )
        wait_http(f"{self.ns_url}/hello", ns, timeout=60)
        admin = parse_credential((self.root / "ns" / "admin.credential").read_text())
        assert admin is not None
        verify: ssl.SSLContext | bool = False
        if self.tls:
            ca = x509.load_pem_x509_certificate((self.root / "ns" / "ca" / "ca.crt").read_bytes())
            self.fingerprint = pki.fingerprint(ca)
            verify = ssl.create_default_context(cafile=str(self.ca_file))
        self.api = httpx.Client(
            base_url=self.ns_url, headers=admin.header, timeout=60, verify=verify
        )
        self.ts_token = self.admin("POST", "/api/tokens", {"kind": "taskserver"})["token"]

    def admin(self, method: str, path: str, body: object = None) -> dict[str, str]:
        assert self.api is not None
        response = self.api.request(method, path, json=body)
        response.raise_for_status()
        result: dict[str, str] = response.json() if response.content else {}
        return result

    def start_ts(self, server: str) -> Proc:
        proc = self.launcher.start(
            f"ts-{server}",
            "taskserver",
            "serve",
            "--ns",
            self.ns_url,
            "--bind",
            f"127.0.0.1:{self.ts_port}",
            "--data-dir",
            str(self.root / "ts"),
            *self.trust(),
            "--token",
            self.ts_token,
            "--name",
            "ts-bench",
            "--client-limit",
            "100000",
            "--http-server",
            server,
            prefix=["taskset", "-c", TS_CPU],
        )
        wait_http(f"{self.ts_url}/hello", proc)
        return proc

    def enrol_agents(self) -> None:
        self.admin("POST", "/api/taskservers/ts-bench/approve")
        self.admin("POST", "/api/collections", {"name": "Bench", "rules": {"name_pattern": "b-*"}})
        entry = {"collection": "Bench", "task_servers": ["ts-bench"]}
        self.admin("POST", "/api/documents/policy/draft/entries", {"entry": entry})
        self.admin("POST", "/api/documents/policy/apply")
        token = self.admin("POST", "/api/tokens", {"kind": "agent"})["token"]
        started = time.monotonic()
        self.credentials = asyncio.run(self._enrol(token))
        print(
            f"enrolled and assigned {len(self.credentials)} agents in "
            f"{time.monotonic() - started:.0f} s"
        )

    async def _enrol(self, token: str) -> list[str]:
        limit = asyncio.Semaphore(16)

        async def one(client: httpx.AsyncClient, n: int) -> str:
            facts = {"name": f"b-{n}", "hardware_id": f"bench-{n}", "addresses": ["127.0.0.1/8"]}
            body: dict[str, object] = {"token": token, "facts": facts}
            key = pki.new_key()
            if self.tls:
                body["csr"] = pki.csr_pem(key, "agent")
            async with limit:
                enrolled = (await client.post("/api/agent/enrol", json=body)).json()
                if self.tls:  # from now on it calls with its own certificate
                    cert_file, key_file = self.agent_files[n]
                    cert_file.write_text(enrolled["certificate"])
                    key_file.write_bytes(pki.key_pem(key))
                    client = httpx.AsyncClient(
                        base_url=self.ns_url, timeout=60, verify=self.agent_context(n)
                    )
                headers = {"Authorization": f"Bearer {enrolled['credential']}"}
                assigned = await client.post(
                    "/api/agent/assignment", json={"facts": facts}, headers=headers
                )
                if self.tls:
                    await client.aclose()
            assert assigned.json()["task_server_name"] == "ts-bench", assigned.text
            return str(enrolled["credential"])

        keys = self.root / "agents"
        keys.mkdir(exist_ok=True)
        self.agent_files = [(keys / f"{n}.crt", keys / f"{n}.key") for n in range(self.args.agents)]
        verify: ssl.SSLContext | bool = False
        if self.tls:
            verify = ssl.create_default_context(cafile=str(self.ca_file))
        async with httpx.AsyncClient(base_url=self.ns_url, timeout=60, verify=verify) as client:
            return await asyncio.gather(*(one(client, n) for n in range(self.args.agents)))

    async def warm_up(self) -> None:
        """Every agent polls once, so the task server has looked each of them up."""
        limit = asyncio.Semaphore(32)

        async def one(client: httpx.AsyncClient, n: int) -> None:
            headers = {"Authorization": f"Bearer {self.credentials[n]}"}
            async with limit:
                if self.tls:  # its own certificate: its own connection
                    async with httpx.AsyncClient(
                        base_url=self.ts_url, timeout=60, verify=self.agent_context(n)
                    ) as own:
                        reply = await own.get("/agent/poll", headers=headers)
                else:
                    reply = await client.get("/agent/poll", headers=headers)
            assert reply.status_code == 200 and reply.json()["work"] == [], reply.text

        async with httpx.AsyncClient(base_url=self.ts_url, timeout=60, verify=False) as client:
            await asyncio.gather(*(one(client, n) for n in range(len(self.credentials))))

    # --- measuring -----------------------------------------------------------------

    def wrk(self, path: str) -> Load:
        # Over mutual TLS a connection is one agent's (its certificate): wrk, which cannot
        # present one, goes through stunnel with agent 0's, and polls as agent 0.
        count = 1 if self.tls else self.args.wrk_credentials
        creds = ",".join(f'"{c}"' for c in self.credentials[:count])
        script = self.root / "load.lua"
        script.write_text(LUA % (creds, path))
        cmd = [
            "taskset",
            "-c",
            LOAD_CPU,
            "wrk",
            "-t1",
            f"-c{self.args.connections}",
            f"-d{self.args.duration}s",
            "--timeout",
            "5s",
            "-s",
            str(script),
            f"http://127.0.0.1:{self.stunnel_port if self.tls else self.ts_port}{path}",
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=self.args.duration + 60)
        line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            raise RuntimeError(f"wrk printed no result:\n{out.stdout}\n{out.stderr}")
        result = json.loads(line.removeprefix("RESULT "))
        if result["errors"] or result["bad_status"]:
            raise RuntimeError(f"{path}: {result['errors']} errors, {result['bad_status']} non-2xx")
        return Load(
            rate=result["requests"] / (result["duration_us"] / 1e6),
            p50_ms=result["p50_us"] / 1000,
            p99_ms=result["p99_us"] / 1000,
        )

    def start_stunnel(self) -> None:
        """A TLS client for wrk: plain HTTP in on a local port, agent 0's mutual TLS out."""
        self.stunnel_port = free_port()
        cert, key = self.agent_files[0]
        conf = self.root / "stunnel.conf"
        conf.write_text(
            "foreground = yes\npid =\n[ts]\nclient = yes\n"
            f"accept = 127.0.0.1:{self.stunnel_port}\nconnect = 127.0.0.1:{self.ts_port}\n"
            f"cert = {cert}\nkey = {key}\nCAfile = {self.ca_file}\nverifyChain = yes\n"
        )
        log = open(self.root / "logs" / "stunnel.log", "ab")  # noqa: SIM115
        self.stunnel = subprocess.Popen(
            ["taskset", "-c", LOAD_CPU, "stunnel", str(conf)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        wait_until(lambda: established_listen(self.stunnel_port), 20, "stunnel listening")

    async def channels(self, pid: int) -> dict[str, float]:
        """Open one long-poll channel per agent; memory of the serving process per channel."""
        before = memory_kib(pid)
        writers: list[asyncio.StreamWriter] = []
        request = (
            "GET /agent/channel?wait=300 HTTP/1.1\r\n"
            "Host: bench\r\nAuthorization: Bearer {}\r\n\r\n"
        )
        try:
            for n, credential in enumerate(self.credentials):
                _, writer = await asyncio.open_connection(
                    "127.0.0.1", self.ts_port, ssl=self.agent_context(n) if self.tls else None
                )
                writer.write(request.format(credential).encode())
                writers.append(writer)
            await asyncio.gather(*(w.drain() for w in writers))
            opened = await asyncio.to_thread(
                wait_until, lambda: established(self.ts_port) >= len(writers), 60, "channels open"
            )
            assert opened
            await asyncio.sleep(3)  # let the server read every request and park it
            after = memory_kib(pid)
            held = established(self.ts_port)
        finally:
            for writer in writers:
                writer.close()
        n = len(writers)
        return {
            "channels": held,
            "rss_before_mib": before["rss"] / 1024,
            "rss_after_mib": after["rss"] / 1024,
            "rss_per_channel_kib": (after["rss"] - before["rss"]) / n,
            "pss_per_channel_kib": (after["pss"] - before["pss"]) / n,
        }

    def measure(self, server: str, proc: Proc | None = None) -> dict[str, object]:
        proc = proc or self.start_ts(server)
        try:
            pid = serving_pid(proc)
            asyncio.run(self.warm_up())
            if self.tls:
                self.start_stunnel()
            self.wrk("/hello")  # a short warm-up of the server itself
            hello: list[Load] = []
            poll: list[Load] = []
            for _ in range(self.args.rounds):
                hello.append(self.wrk("/hello"))
                poll.append(self.wrk("/agent/poll"))
            channel = asyncio.run(self.channels(pid))
            if not proc.alive():
                raise RuntimeError(f"task server died:\n{proc.output()[-2000:]}")
            return {"server": server, "hello": median(hello), "poll": median(poll), **channel}
        finally:
            self.launcher.stop(proc)
            if self.stunnel is not None:  # ours: stopped by its PID
                self.stunnel.terminate()
                self.stunnel.wait(10)
                self.stunnel = None


def median(loads: list[Load]) -> Load:
    """The round with the median rate (its latencies with it)."""
    return sorted(loads, key=lambda load: load.rate)[len(loads) // 2]


def report(results: list[dict[str, object]], label: str = "") -> None:
    print(
        f"\n{'server':8} {'hello/s':>9} {'poll/s':>9} {'ratio':>6} "
        f"{'hello p50/p99 ms':>17} {'poll p50/p99 ms':>16} {'channels':>9} {'KiB/channel':>12}"
    )
    for r in results:
        hello, poll = r["hello"], r["poll"]
        assert isinstance(hello, Load) and isinstance(poll, Load)
        print(
            f"{label or r['server']:8} {hello.rate:9.0f} {poll.rate:9.0f} "
            f"{poll.rate / hello.rate:6.2f} "
            f"{hello.p50_ms:8.2f}/{hello.p99_ms:<8.2f} {poll.p50_ms:7.2f}/{poll.p99_ms:<8.2f} "
            f"{r['channels']:9} {r['rss_per_channel_kib']:5.1f} RSS "
            f"{r['pss_per_channel_kib']:4.1f} PSS"
        )
    print(
        "\nrss_before/after_mib: "
        + ", ".join(
            f"{r['server']} {r['rss_before_mib']:.1f} -> {r['rss_after_mib']:.1f}" for r in results
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--agents", type=int, default=10_000, help="agents = channels opened")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk round")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--wrk-credentials", type=int, default=1000)
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument(
        "--tls",
        action="store_true",
        help="also measure uvicorn over mutual TLS (needs stunnel) and print the ratios",
    )
    args = parser.parse_args()
    for tool in ("wrk", "taskset", *(["stunnel"] if args.tls else [])):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed: run 'make bench' (it installs wrk)", file=sys.stderr)
            return 2
    # One file descriptor per channel, in this process and in the servers it starts.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.agents + 1024
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, 1024), max(hard, want)))
    results = run(args, tls=False, servers=args.servers.split(","))
    tls_results: list[dict[str, object]] = []
    if args.tls:
        # The same measurement over mutual TLS, uvicorn (granian serves plain HTTP only).
        tls_results = run(args, tls=True, servers=["uvicorn"])
    print(
        f"\nTS on CPU {TS_CPU}, wrk -t1 -c{args.connections} on CPU {LOAD_CPU}, "
        f"{args.rounds} x {args.duration} s rounds (median), {args.agents} agents"
    )
    print("plain HTTP (--insecure-http):")
    report(results)
    if tls_results:
        print("mutual TLS (wrk through stunnel with one agent's certificate):")
        report(tls_results, label="uvicorn+tls")
        plain = next(r for r in results if r["server"] == "uvicorn")
        tls = tls_results[0]
        ratios = {
            "poll/hello over TLS": rate(tls, "poll") / rate(tls, "hello"),
            "hello TLS/plain": rate(tls, "hello") / rate(plain, "hello"),
            "poll TLS/plain": rate(tls, "poll") / rate(plain, "poll"),
            "KiB per channel TLS/plain": float(tls["rss_per_channel_kib"])  # type: ignore[arg-type]
            / float(plain["rss_per_channel_kib"]),  # type: ignore[arg-type]
        }
        print("\nratios, same run: " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
    return 0


def rate(result: dict[str, object], path: str) -> float:
    load = result[path]
    assert isinstance(load, Load)
    return load.rate


def run(args: argparse.Namespace, tls: bool, servers: list[str]) -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory(prefix="taskfleet-bench-") as tmp:
        bench = Bench(Path(tmp), args, tls=tls)
        try:
            bench.start_ns()
            # The first server registers ts-bench and stays up while agents are assigned to it.
            first = bench.start_ts(servers[0])
            bench.enrol_agents()
            if tls:  # approved: wait until it serves the certificate approval signed
                ctx = ssl.create_default_context(cafile=str(bench.ca_file))
                wait_until(
                    lambda: httpx.get(f"{bench.ts_url}/hello", verify=ctx).status_code == 200,
                    30,
                    "the task server's CA certificate",
                )
            results = [bench.measure(servers[0], first)]
            report(results)  # printed as it goes: a later failure does not lose it
            for server in servers[1:]:
                results.append(bench.measure(server))
                report(results[-1:])
        finally:
            bench.launcher.stop_all()
            if bench.api is not None:
                bench.api.close()
    return results


if __name__ == "__main__":
    sys.exit(main())
