"""The console's Computers page with 10,000 computers: server time and browser time.

Starts a real NS (SQLite, temporary directory, 127.0.0.1), registers ``--computers``
computers through the real agent enrolment API, logs in as admin, then for each
view of the list (first page, a search, sorted by last contact, the last page,
one computer's page) measures:

- the server: ``--repeat`` GETs with the session cookie (httpx), median and max;
- the browser: headless Debian Chromium (Playwright), navigation to the load event.

    .venv/bin/python bench/console_computers.py [--computers 10000] [--repeat 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

from taskfleet.cli.launcher import Launcher, free_port, wait_http
from taskfleet.protocol.transport import parse_credential

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


async def enrol(ns_url: str, token: str, count: int) -> None:
    limit = asyncio.Semaphore(16)

    async def one(client: httpx.AsyncClient, n: int) -> None:
        facts = {
            "name": f"pc-{n:05}",
            "hardware_id": f"bench-{n}",
            "os": "Linux 6.1",
            "addresses": [f"10.{n // 65536}.{n // 256 % 256}.{n % 256}/16"],
        }
        async with limit:
            reply = await client.post("/api/agent/enrol", json={"token": token, "facts": facts})
        reply.raise_for_status()

    async with httpx.AsyncClient(base_url=ns_url, timeout=60) as client:
        await asyncio.gather(*(one(client, n) for n in range(count)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--computers", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: 'make bench' installs Debian's chromium", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="taskfleet-bench-") as tmp:
        root = Path(tmp)
        launcher = Launcher(root / "logs")
        port = free_port()
        ns_url = f"http://127.0.0.1:{port}"
        try:
            ns = launcher.start(
                "ns",
                "ns",
                "serve",
                "--db",
                f"sqlite:///{root}/ns.db",
                "--bind",
                f"127.0.0.1:{port}",
                "--data-dir",
                str(root / "ns"),
                "--insecure-http",  # hand-made agents speak plain HTTP
            )
            wait_http(f"{ns_url}/hello", ns, timeout=60)
            admin = parse_credential((root / "ns" / "admin.credential").read_text())
            assert admin is not None
            with httpx.Client(base_url=ns_url, headers=admin.header, timeout=60) as api:
                token = api.post("/api/tokens", json={"kind": "agent"}).json()["token"]
            started = time.monotonic()
            asyncio.run(enrol(ns_url, token, args.computers))
            print(f"registered {args.computers} computers in {time.monotonic() - started:.0f} s")
            password = (root / "ns" / "admin.password").read_text().strip()
            views = {
                "first page": "/console/computers",
                "search 'pc-012'": "/console/computers?q=pc-012",
                "sorted by last contact": "/console/computers?sort=last_contact&desc=true",
                "last page": f"/console/computers?page={-(-args.computers // 50)}",
                "one computer": f"/console/computers/pc-{args.computers // 2:05}",
            }
            with httpx.Client(base_url=ns_url, timeout=60) as web:
                web.post("/console/login", data={"name": "admin", "password": password})
                server = {}
                for label, path in views.items():
                    times = []
                    for _ in range(args.repeat):
                        t0 = time.perf_counter()
                        reply = web.get(path)
                        times.append((time.perf_counter() - t0) * 1000)
                        assert reply.status_code == 200, (path, reply.status_code)
                    server[label] = (statistics.median(times), max(times))
            browser_ms = {}
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.goto(f"{ns_url}/console/login")
                page.get_by_label("User name").fill("admin")
                page.get_by_label("Password").fill(password)
                page.get_by_role("button", name="Log in").click()
                page.wait_for_url(f"{ns_url}/console/")
                for label, path in views.items():
                    page.goto(f"{ns_url}{path}")  # warm
                    t0 = time.perf_counter()
                    page.goto(f"{ns_url}{path}", wait_until="load")
                    browser_ms[label] = (time.perf_counter() - t0) * 1000
                browser.close()
        finally:
            launcher.stop_all()
    print(f"\nComputers page with {args.computers} computers (server: {args.repeat} GETs)")
    print(f"{'view':26} {'server median':>14} {'server max':>11} {'browser load':>13}")
    for label in views:
        med, worst = server[label]
        print(f"{label:26} {med:11.1f} ms {worst:8.1f} ms {browser_ms[label]:10.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
