"""Open files: a task server under ``ulimit -n 256`` holding more connections than that
keeps answering polls, and refuses channels past its capacity with 503 and Retry-After."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from taskfleet.cli.launcher import wait_until
from tests.fleet import Fleet

LIMIT = 256
AGENTS = 200  # one channel each: more than the channels 256 open files allow
IDLE = 100  # connections that never send a request: 300 connections in all


@pytest.fixture
def sqlite_fleet(tmp_path: Path) -> Iterator[Fleet]:
    # The database plays no part here: SQLite only.
    f = Fleet(tmp_path / "fleet", f"sqlite:///{tmp_path / 'ns.db'}", tls=False)  # hand-made agents
    try:
        f.start_ns()
        yield f
    finally:
        f.stop()


async def _open_channel(port: int, header: str) -> tuple[asyncio.StreamWriter | None, str, bytes]:
    """Send one channel request; say how it went within 3 s: parked, refused or closed."""
    request = f"GET /agent/channel?wait=60 HTTP/1.1\r\nHost: ts\r\nAuthorization: {header}\r\n\r\n"
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request.encode())
        await writer.drain()
    except ConnectionError:
        return None, "closed", b""
    try:
        async with asyncio.timeout(3):
            reply = await reader.read(65536)
            while reply and not reply.endswith(b"}"):  # a refusal: read to its end
                more = await reader.read(65536)
                if not more:
                    break
                reply += more
    except TimeoutError:
        return writer, "parked", b""
    except ConnectionError:
        return writer, "closed", b""
    return writer, ("refused" if reply else "closed"), reply


async def _enrol(ns_url: str, token: str) -> list[str]:
    """AGENTS computers enrolled and assigned (to ts-1 by the policy); their credentials."""
    slots = asyncio.Semaphore(8)

    async def one(client: httpx.AsyncClient, i: int) -> str:
        facts = {"name": f"pc-{i:03d}", "hardware_id": f"hw-open-files-{i}"}
        async with slots:
            enrolled = await client.post("/api/agent/enrol", json={"token": token, "facts": facts})
            header = f"Bearer {enrolled.json()['credential']}"
            assigned = await client.post(
                "/api/agent/assignment", json={"facts": facts}, headers={"Authorization": header}
            )
            assert assigned.json()["task_server_name"] == "ts-1", assigned.text
        return header

    async with httpx.AsyncClient(base_url=ns_url, timeout=30) as client:
        return await asyncio.gather(*(one(client, i) for i in range(AGENTS)))


async def _flood(
    port: int, url: str, headers: list[str]
) -> tuple[Counter[str], list[bytes], list[int]]:
    results = await asyncio.gather(*(_open_channel(port, header) for header in headers))
    outcomes = Counter(kind for _, kind, _ in results)
    refusals = [reply for _, kind, reply in results if kind == "refused"]
    idle = []
    for _ in range(IDLE):
        with contextlib.suppress(ConnectionError):
            idle.append(await asyncio.open_connection("127.0.0.1", port))
    await asyncio.sleep(1.5)
    # While every channel the server allows is open, and idle connections fill the rest:
    # polls, each on a new connection.
    polls = []
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10) as client:
        for header in headers[:10]:
            response = await client.get("/agent/poll", headers={"Authorization": header})
            polls.append(response.status_code)
        # One more channel, from an agent that has none open, is refused at once, with a
        # reason and when to come back. (A parked channel may already have ended: each is
        # held until its agent's own renewal instant, 10 s at the least; an agent that
        # finds its place keeps it, and the next one tries, until the gate is full.)
        without = [h for h, (_, kind, _) in zip(headers, results, strict=True) if kind != "parked"]
        for header in without[:20]:
            try:
                one_more = await client.get(
                    "/agent/channel",
                    params={"wait": 60},
                    headers={"Authorization": header},
                    timeout=3,
                )
            except httpx.ReadTimeout:
                continue  # parked in a place that had come free
            refusals.append(
                f"HTTP/1.1 {one_more.status_code} x\r\nretry-after: "
                f"{one_more.headers.get('retry-after')}\r\n\r\n{one_more.text}".encode()
            )
            break
    for writer in [w for w, _, _ in results if w] + [w for _, w in idle]:
        writer.close()
    return outcomes, refusals, polls


def test_task_server_under_a_low_open_files_limit_keeps_answering_polls(
    sqlite_fleet: Fleet,
) -> None:
    fleet = sqlite_fleet
    # Given a task server started under `ulimit -n 256` (soft and hard)
    ts = fleet.start_ts("ts-1", prefix=("prlimit", f"--nofile={LIMIT}:{LIMIT}"))
    fleet.apply_policy("Lab", "pc-*", ["ts-1"])
    # and 200 computers assigned to it
    headers = asyncio.run(_enrol(fleet.ns_url, fleet.token("agent")))
    # It logged the capacity that limit gives
    found = re.search(
        r"open files: limit (\d+); up to (\d+) connections, (\d+) notification channels",
        ts.proc.output(),
    )
    assert found is not None, ts.proc.output()
    assert int(found[1]) == LIMIT
    capacity = int(found[3])
    assert 0 < capacity < int(found[2]) < LIMIT

    # and reports it: the R7 advice warns that its client limit (5,000) is above it
    def warned() -> bool:
        advice = [a for a in fleet.api.get("/api/advice") if a["scope"] == "task server ts-1"]
        return bool(advice) and f"more than the {capacity} notification channels" in " ".join(
            advice[0]["warnings"]
        )

    wait_until(warned, 20, "the R7 advice on ts-1's channel capacity")

    # When those 200 agents open their channels at once, then 100 connections that
    # send nothing are opened
    outcomes, refusals, polls = asyncio.run(_flood(ts.port, ts.url, headers))

    # Then every poll on a new connection is answered
    assert polls == [200] * 10, (polls, outcomes, ts.proc.output()[-3000:])
    # and its capacity of channels was parked
    assert outcomes["parked"] == capacity, (outcomes, refusals[:2])
    # and every other channel was refused with a Retry-After (503 Busy, or 429 when its
    # agent's first lookup met the per-source lookup limit), or closed
    assert set(outcomes) <= {"parked", "refused", "closed"}, outcomes
    # (how many of each depends on how fast the flood arrives: past the connections
    # limit plus half the reserve, a connection is closed unanswered to keep the reserve)
    assert len(refusals) >= 2, outcomes
    for reply in refusals:
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith((b"HTTP/1.1 503", b"HTTP/1.1 429")), reply[:300]
        retry_after = re.search(rb"(?im)^retry-after: (\d+)\r?$", head)
        assert retry_after is not None and int(retry_after[1]) >= 1, head
        assert json.loads(body)["error"] in ("busy", "too_many_requests")
    # and the server never ran out of files
    log = ts.proc.output()
    assert "Too many open files" not in log and "Traceback" not in log, log[-3000:]

    # And an agent whose channel is parked may open a new one, which replaces it (the
    # old one is most often a connection it gave up on)
    def parks() -> bool:
        try:
            httpx.get(
                f"{ts.url}/agent/channel",
                params={"wait": 60},
                headers={"Authorization": headers[0]},
                timeout=httpx.Timeout(1.5, connect=5),
            )
        except httpx.ReadTimeout:
            return True  # no answer: parked
        return False

    wait_until(parks, 20, "a channel parked after the flood")


def test_the_scale_advice_warns_when_the_client_limit_exceeds_the_channel_capacity(
    sqlite_fleet: Fleet,
) -> None:
    fleet = sqlite_fleet
    # Given a task server with the default client limit of 5,000
    ts = fleet.start_ts("ts-1")
    identity = json.loads((ts.data_dir / "identity.json").read_text())
    as_ts = {"Authorization": f"Bearer {identity['credential']}"}
    assert not [a for a in fleet.api.get("/api/advice") if a["scope"] == "task server ts-1"]

    # When its heartbeat says its open files allow 836 notification channels
    reply = httpx.post(
        f"{fleet.ns_url}/api/ts/heartbeat", json={"channel_capacity": 836}, headers=as_ts
    )
    assert reply.status_code == 200, reply.text

    # Then the R7 advice warns about it, with the open-files limit that would do
    found = [a for a in fleet.api.get("/api/advice") if a["scope"] == "task server ts-1"]
    assert len(found) == 1 and not found[0]["ok"], found
    assert (
        "client limit (5000) is more than the 836 notification channels"
        in (found[0]["warnings"][0])
    )
    # and a heartbeat without the figure leaves it as it was, a wrong one is refused
    assert httpx.post(f"{fleet.ns_url}/api/ts/heartbeat", json={}, headers=as_ts).is_success
    assert [a["ok"] for a in fleet.api.get("/api/advice") if a["scope"] == "task server ts-1"] == [
        False
    ]
    bad = httpx.post(
        f"{fleet.ns_url}/api/ts/heartbeat", json={"channel_capacity": -1}, headers=as_ts
    )
    assert bad.status_code == 400 and "channel_capacity" in bad.json()["message"]
