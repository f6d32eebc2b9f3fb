"""Long poll or WebSocket for the notification channel: server memory per open channel.

The design question of docs/notification-channel.md, measured on the HTTP
server the task server runs on (uvicorn, uvloop, httptools; websockets (sans-I/O) for
WebSocket). A minimal Starlette app in a child process, pinned to CPU 0, offers
both kinds of channel, each parked on its own asyncio.Event exactly as the
task server's Tickler parks one:

    GET /lp   a long poll: the response waits until the event is set
    WS  /ws   a WebSocket: accepted, then waits until the event is set

For each kind this opens ``--channels`` connections from this process (raw
sockets: the HTTP request, or the WebSocket upgrade handshake), checks the
server holds them all, and prints the server's RSS and PSS growth per channel.
Then it sets every event (one "tickle" each) and times how long until every
channel has its answer. 127.0.0.1 only; the server is stopped by PID.

    .venv/bin/python bench/channel_kinds.py [--channels 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import httpx

from taskfleet.cli.launcher import free_port, wait_until

SERVER = """
import asyncio, sys
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute

events: dict[int, asyncio.Event] = {}

async def long_poll(request):
    event = events.setdefault(int(request.query_params["id"]), asyncio.Event())
    await event.wait()
    return PlainTextResponse("tickle")

async def websocket(ws):
    await ws.accept()
    event = events.setdefault(int(ws.query_params["id"]), asyncio.Event())
    await event.wait()
    await ws.send_text("tickle")
    await ws.close()

async def tickle_all(request):
    for event in events.values():
        event.set()
    events.clear()
    return PlainTextResponse("ok")

async def hello(request):
    return PlainTextResponse("hello")

app = Starlette(routes=[Route("/lp", long_poll), WebSocketRoute("/ws", websocket),
                        Route("/tickle", tickle_all), Route("/hello", hello)])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
            ws="websockets-sansio", log_level="warning", backlog=4096, ws_ping_interval=None)
"""


def memory_kib(pid: int) -> tuple[int, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        fields[key] = int(value.split()[0])
    return fields["Rss"], fields["Pss"]


def established(port: int) -> int:
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        cols = line.split()
        if int(cols[1].split(":")[1], 16) == port and cols[3] == "01":
            count += 1
    return count


def request_for(kind: str, n: int) -> bytes:
    if kind == "lp":
        return f"GET /lp?id={n} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /ws?id={n} HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def measure(kind: str, port: int, pid: int, channels: int) -> dict[str, float]:
    before = memory_kib(pid)
    streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for n in range(channels):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request_for(kind, n))
            streams.append((reader, writer))
        if kind == "ws":  # the upgrade must be accepted before the channel counts as open
            for reader, _ in streams:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                assert head.startswith(b"HTTP/1.1 101"), head[:80]
        await asyncio.to_thread(
            wait_until, lambda: established(port) >= channels, 60, f"{kind} channels open"
        )
        await asyncio.sleep(3)
        after = memory_kib(pid)
        # One tickle each: how long until every channel has heard it?
        started = time.monotonic()
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{port}/tickle", timeout=60)

        async def heard(reader: asyncio.StreamReader) -> None:
            data = await asyncio.wait_for(reader.read(4096), 60)
            assert b"tickle" in data, data

        await asyncio.gather(*(heard(reader) for reader, _ in streams))
        tickled_s = time.monotonic() - started
    finally:
        for _, writer in streams:
            writer.close()
    return {
        "rss_per_channel_kib": (after[0] - before[0]) / channels,
        "pss_per_channel_kib": (after[1] - before[1]) / channels,
        "rss_after_mib": after[0] / 1024,
        "tickle_all_s": tickled_s,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--channels", type=int, default=10_000)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.channels + 1024
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, 1024), max(hard, want)))
    print(
        f"{'kind':10} {'channels':>8} {'RSS KiB/ch':>10} {'PSS KiB/ch':>10} "
        f"{'RSS after MiB':>13} {'tickle all s':>12}"
    )
    for kind, label in (("lp", "long poll"), ("ws", "websocket")):
        # A fresh server per kind, so one kind's freed memory does not hide the other's.
        port = free_port()
        cmd = ["taskset", "-c", "0", sys.executable, "-c", SERVER, str(port)]
        server = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        try:
            wait_until(
                lambda: httpx.get(f"http://127.0.0.1:{port}/hello").status_code == 200,  # noqa: B023
                30,
                "the channel server",
            )
            r = asyncio.run(measure(kind, port, server.pid, args.channels))
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
        print(
            f"{label:10} {args.channels:8} {r['rss_per_channel_kib']:10.1f} "
            f"{r['pss_per_channel_kib']:10.1f} {r['rss_after_mib']:13.1f} "
            f"{r['tickle_all_s']:12.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
