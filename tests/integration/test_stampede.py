"""R3 under a stampede: many agents asking at once never push a task server past its limit."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.fleet import Fleet

# Hand-made agents (raw enrolment, no certificate) probe something other than TLS,
# which tests/integration/test_tls.py covers: this fleet runs --insecure-http.
pytestmark = pytest.mark.plain_http


AGENTS = 40


async def _enrol(client: httpx.AsyncClient, token: str, n: int) -> list[dict[str, Any]]:
    """Enrol ``n`` computers; returns each one's facts and Authorization header."""
    out = []
    for i in range(n):
        facts = {"name": f"crowd-{i:03d}", "hardware_id": f"hw-crowd-{i}", "addresses": []}
        response = await client.post("/api/agent/enrol", json={"token": token, "facts": facts})
        response.raise_for_status()
        header = {"Authorization": f"Bearer {response.json()['credential']}"}
        out.append({"facts": facts, "headers": header})
    return out


async def _stampede(ns_url: str, token: str) -> list[dict[str, Any]]:
    limits = httpx.Limits(max_connections=AGENTS, max_keepalive_connections=AGENTS)
    async with httpx.AsyncClient(base_url=ns_url, limits=limits, timeout=60) as client:
        agents = await _enrol(client, token, AGENTS)
        # Open every connection first, so that the assignments below arrive together.
        await asyncio.gather(*(client.get("/hello") for _ in range(AGENTS)))
        replies = await asyncio.gather(
            *(
                client.post(
                    "/api/agent/assignment", json={"facts": a["facts"]}, headers=a["headers"]
                )
                for a in agents
            )
        )
    for reply in replies:
        assert reply.status_code == 200, reply.text
    return [reply.json() for reply in replies]


@pytest.mark.timeout(180)
def test_client_limits_hold_when_many_agents_ask_at_once(fleet: Fleet) -> None:
    # Given two approved task servers with small client limits, listed by the policy
    fleet.start_ts("ts-small", "--client-limit", "3")
    fleet.start_ts("ts-tiny", "--client-limit", "2")
    fleet.apply_policy("Crowd", "crowd-*", ["ts-small", "ts-tiny"])

    # When 40 enrolled agents ask the NS for their task server at the same moment
    assignments = asyncio.run(_stampede(fleet.ns_url, fleet.token("agent")))

    # Then each task server took exactly its limit, and the rest went to the NS (R3 step 3)
    by_server = Counter(a["task_server_name"] for a in assignments)
    assert by_server == {
        "ts-small": 3,
        "ts-tiny": 2,
        "notification server": AGENTS - 5,
    }, by_server
    # ... and what the NS stored agrees with what the agents were told
    rows = {r["name"]: r for r in fleet.api.get("/api/taskservers")}
    assert (rows["ts-small"]["agents"], rows["ts-tiny"]["agents"]) == (3, 2)
    # ... and the reason of those that the full task servers turned away says so
    turned_away = [a["reason"] for a in assignments if a["task_server_id"] is None]
    assert all("ts-small skipped, at its client limit (3/3)" in r for r in turned_away)
    assert all("ts-tiny skipped, at its client limit (2/2)" in r for r in turned_away)
