"""The task server's relay: agents answered from memory, looked up at the NS once, the
NS's refusals remembered for their TTL (taskserver.lookups), a herd right after approval
served after one heartbeat, work handed out as the NS sent it, and status drained to the
NS in order (R6, R8).

Unit tests: the real ``Relay`` and its ``NSLink``; only the NS is a double, an
``httpx.MockTransport`` answering the task-server API.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from taskfleet.errors import NotApproved, NotAssigned, Unauthenticated
from taskfleet.protocol.messages import StatusEvent
from taskfleet.protocol.transport import hash_secret
from taskfleet.taskserver import lookups, relay
from taskfleet.taskserver.lookups import NEGATIVE_TTL_S
from taskfleet.taskserver.ns_link import NSLink
from taskfleet.taskserver.relay import Relay
from taskfleet.taskserver.settings import TaskServerSettings

SOURCE = "10.0.0.9"
ONE_AGENT = re.compile(r"/api/ts/agents/(\d+)")


def entry(computer_id: int, secret: str) -> dict[str, Any]:
    return {"computer_id": computer_id, "credential_hash": hash_secret(secret), "settings": {}}


@dataclass
class FakeNS:
    """The NS's task-server API, as far as the relay uses it."""

    approval: str = "approved"
    agent_map: dict[int, str] = field(default_factory=lambda: {7: "s-7"})  # id -> secret
    assigned: dict[int, str] = field(default_factory=dict)  # found by a lookup only
    work: list[dict[str, Any]] = field(default_factory=list)  # /api/ts/work, in turn
    requests: list[str] = field(default_factory=list)  # "METHOD path"
    status_batches: list[list[str]] = field(default_factory=list)  # event ids per request
    delay_s: float = 0.0  # how long each answer takes
    news: asyncio.Event = field(default_factory=asyncio.Event)  # ends the events long poll
    epoch: int = 1  # the agents epoch: moves when assignments change

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.requests.append(f"{request.method} {path}")
        assert request.headers["authorization"] == "Bearer tf1.taskserver.3.ts-secret"
        await asyncio.sleep(self.delay_s)
        if path == "/api/ts/heartbeat":
            return httpx.Response(
                200, json={"approval": self.approval, "enabled": True, "agents_epoch": self.epoch}
            )
        if path == "/api/ts/agents":
            agents = [entry(c, s) for c, s in self.agent_map.items()]
            return httpx.Response(200, json={"agents_epoch": self.epoch, "agents": agents})
        if found := ONE_AGENT.fullmatch(path):
            computer_id = int(found[1])
            if computer_id not in self.assigned:
                message = f"computer {computer_id} is not assigned to ts3"
                return httpx.Response(409, json={"error": "not_assigned", "message": message})
            agents = [entry(computer_id, self.assigned[computer_id])]
            return httpx.Response(200, json={"agents_epoch": 1, "agents": agents})
        if path == "/api/ts/events":
            await self.news.wait()
            self.news.clear()
            if self.approval != "approved":
                message = "task server ts3 is not approved"
                return httpx.Response(403, json={"error": "not_approved", "message": message})
            news = {"version": 1, "agents_epoch": self.epoch, "work_waiting": bool(self.work)}
            return httpx.Response(200, json=news)
        if path == "/api/ts/work":
            batch = self.work.pop(0) if self.work else {"work": [], "runs": []}
            return httpx.Response(200, json=batch)
        if path == "/api/ts/status":
            ids = [e["id"] for e in json.loads(request.content)["events"]]
            self.status_batches.append(ids)
            return httpx.Response(200, json={"accepted": ids})
        raise AssertionError(f"unexpected {request.method} {path}")

    def add_work(self, batch: dict[str, Any]) -> None:
        """Work created: the NS says so on the events long poll."""
        self.work.append(batch)
        self.news.set()

    def lookups(self) -> list[str]:
        return [r for r in self.requests if ONE_AGENT.search(r)]


RelayFactory = Callable[[FakeNS], Awaitable[Relay]]


@pytest.fixture
async def make_relay(tmp_path: Path) -> AsyncIterator[RelayFactory]:
    """A registered task server (identity on disk) whose NS is the given ``FakeNS``."""
    made: list[Relay] = []

    async def make(ns: FakeNS) -> Relay:
        settings = TaskServerSettings(
            ns_url="http://ns.test", bind="127.0.0.1:0", data_dir=tmp_path, insecure_http=True
        )
        identity = {"credential": "tf1.taskserver.3.ts-secret", "name": "ts3"}
        (tmp_path / "identity.json").write_text(json.dumps(identity))
        made.append(Relay(settings, NSLink(settings, http_transport=httpx.MockTransport(ns))))
        return made[-1]

    yield make
    for made_relay in made:
        await made_relay.link.close()


class Clock:
    """``time`` for taskserver.lookups: monotonic seconds that a test moves on."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(lookups, "time", fake)
    return fake


# --- agents: from memory, looked up once, refusals remembered -------------------------


async def test_an_agent_in_the_map_is_answered_from_memory(make_relay: RelayFactory) -> None:
    # Given an approved task server whose agent map (loaded with its first heartbeat)
    # has computer 7
    ns = FakeNS()
    server = await make_relay(ns)

    # When computer 7 polls three times
    for _ in range(3):
        assert await server.authenticate(7, "s-7", SOURCE) is not None

    # Then the NS was asked for the map once and never about computer 7 alone
    assert ns.requests == ["POST /api/ts/heartbeat", "GET /api/ts/agents"]
    assert server.known(7, "s-7") is not None and server.known(7, "wrong") is None


async def test_an_agent_assigned_since_the_map_was_loaded_is_looked_up_once(
    make_relay: RelayFactory,
) -> None:
    # Given a task server whose map lacks computer 8, which the NS assigned here since
    ns = FakeNS(assigned={8: "s-8"})
    server = await make_relay(ns)
    await server.authenticate(7, "s-7", SOURCE)

    # When computer 8 polls three times
    for _ in range(3):
        await server.authenticate(8, "s-8", SOURCE)

    # Then the NS was asked about it once, and it is known from then on
    assert ns.lookups() == ["GET /api/ts/agents/8"]
    assert server.known(8, "s-8") is not None


async def test_not_assigned_here_is_remembered_for_its_ttl_then_asked_again(
    make_relay: RelayFactory, clock: Clock
) -> None:
    # Given a task server, and computer 9, which the NS has not assigned here
    ns = FakeNS()
    server = await make_relay(ns)
    await server.authenticate(7, "s-7", SOURCE)

    # When computer 9 polls, and again until just before the TTL ends, with any secret
    with pytest.raises(NotAssigned):
        await server.authenticate(9, "s-9", SOURCE)
    for secret in ("s-9", "another"):
        clock.now += NEGATIVE_TTL_S / 2 - 0.1
        with pytest.raises(NotAssigned, match="not assigned to task server ts3"):
            await server.authenticate(9, secret, SOURCE)

    # Then the NS was asked once; the refusal came from memory
    assert ns.lookups() == ["GET /api/ts/agents/9"]

    # When the TTL has passed, and the NS has assigned it here meanwhile
    clock.now += 0.3
    ns.assigned[9] = "s-9"
    settings = await server.authenticate(9, "s-9", SOURCE)

    # Then the NS is asked again, and the agent served
    assert ns.lookups() == ["GET /api/ts/agents/9"] * 2 and settings is not None


async def test_a_wrong_secret_is_refused_from_memory_and_the_right_one_served(
    make_relay: RelayFactory, clock: Clock
) -> None:
    # Given a task server, and computer 8, assigned here since the map was loaded
    ns = FakeNS(assigned={8: "s-8"})
    server = await make_relay(ns)
    await server.authenticate(7, "s-7", SOURCE)

    # When someone polls as computer 8 with a wrong secret, twice
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            await server.authenticate(8, "guessed", SOURCE)

    # Then the NS was asked once, and the second refusal came from memory
    assert ns.lookups() == ["GET /api/ts/agents/8"]
    # and the real agent, with its own secret, is served without asking again
    assert await server.authenticate(8, "s-8", SOURCE) is not None
    assert ns.lookups() == ["GET /api/ts/agents/8"]


async def test_an_unapproved_task_server_serves_no_agent(make_relay: RelayFactory) -> None:
    # Given a task server the NS has not approved (R1)
    ns = FakeNS(approval="pending")
    server = await make_relay(ns)

    # When an agent polls
    with pytest.raises(NotApproved):
        await server.authenticate(7, "s-7", SOURCE)

    # Then it is refused, and no agent was looked up
    assert ns.lookups() == [] and server.known(7, "s-7") is None


async def test_a_herd_right_after_approval_costs_one_heartbeat_and_is_served(
    make_relay: RelayFactory,
) -> None:
    # Given a task server just started (approval unknown) and an NS slow to answer
    ns = FakeNS(agent_map={c: f"s-{c}" for c in range(1, 6)}, delay_s=0.02)
    server = await make_relay(ns)

    # When five agents poll at once
    answers = await asyncio.gather(*(server.authenticate(c, f"s-{c}", SOURCE) for c in range(1, 6)))

    # Then all are served after one heartbeat and one map load, none looked up alone
    assert all(a is not None for a in answers)
    assert ns.requests == ["POST /api/ts/heartbeat", "GET /api/ts/agents"]


async def test_agents_polling_while_the_map_loads_wait_for_it_instead_of_asking_alone(
    make_relay: RelayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a running task server, and computer 8 assigned to it since its map was loaded
    monkeypatch.setattr(relay, "AGENT_MAP_MIN_INTERVAL_S", 0.0)
    ns = FakeNS()
    server = await make_relay(ns)
    await server.start()
    try:
        ns.agent_map[8] = "s-8"
        ns.epoch = 2

        # When the NS says the agents epoch moved, and computer 8 polls while the new
        # map is on its way (the NS is slow)
        ns.delay_s = 0.05
        ns.news.set()
        async with asyncio.timeout(1.0):
            while ns.requests.count("GET /api/ts/agents") < 2:
                await asyncio.sleep(0.001)
        settings = await server.authenticate(8, "s-8", SOURCE)
    finally:
        await server.stop()

    # Then it was served from the new map, not looked up on its own
    assert settings is not None and ns.lookups() == []


async def test_a_task_server_that_loses_its_approval_answers_open_channels_at_once(
    make_relay: RelayFactory,
) -> None:
    # Given a running task server with computer 7's notification channel open
    ns = FakeNS()
    server = await make_relay(ns)
    await server.start()
    try:
        channel = asyncio.create_task(server.tickler.wait(7, timeout=30.0))
        await asyncio.sleep(0.01)

        # When the NS revokes its approval (its events long poll says so)
        ns.approval = "revoked"
        ns.news.set()

        # Then the channel answers now (untickled), not in 30 s, and the agent, asking
        # again, is told the server is not approved
        async with asyncio.timeout(1.0):
            assert await channel is False
        assert server.known(7, "s-7") is None
        with pytest.raises(NotApproved):
            await server.authenticate(7, "s-7", SOURCE)
    finally:
        await server.stop()


# --- work and status ------------------------------------------------------------------


def status(n: int, computer_id: int = 7) -> StatusEvent:
    return StatusEvent(
        id=f"e{n}", instance_id=100 + n, computer_id=computer_id, state="Running", at=time.time()
    )


async def test_queued_status_is_drained_to_the_ns_in_order_in_batches(
    make_relay: RelayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an approved task server holding five status events from two agents, sent in
    # batches of two
    monkeypatch.setattr(relay, "STATUS_BATCH", 2)
    ns = FakeNS(agent_map={7: "s-7", 8: "s-8"})
    server = await make_relay(ns)
    await server.authenticate(7, "s-7", SOURCE)
    await server.accept_status(7, [status(1), status(2), status(3)])
    await server.accept_status(8, [status(4, 8), status(5, 8)])
    assert len(server.spool) == 5

    # When it stops (it drains its spool first)
    await server.stop()

    # Then the NS got every event once, oldest first, and the spool is empty
    assert ns.status_batches == [["e1", "e2"], ["e3", "e4"], ["e5"]]
    assert len(server.spool) == 0


async def test_status_is_kept_while_the_task_server_is_not_approved(
    make_relay: RelayFactory,
) -> None:
    # Given a task server the NS does not approve (any more), holding a status event
    ns = FakeNS(approval="revoked")
    server = await make_relay(ns)
    with pytest.raises(NotApproved):
        await server.authenticate(7, "s-7", SOURCE)
    await server.accept_status(7, [status(1)])

    # When it stops
    await server.stop()

    # Then nothing went to the NS, and the event is still in its spool
    assert ns.status_batches == [] and len(server.spool) == 1


def work_for(computer_id: int, instances: list[int]) -> dict[str, Any]:
    """A /api/ts/work reply: instances of run 5 for one computer."""
    run = {"run_id": 5, "task_type": "run-script", "params": {"script": "true"}, "timeout_s": 9}
    refs = [{"computer_id": computer_id, "instance_id": i, "run_id": 5} for i in instances]
    return {"work": refs, "runs": [run]}


async def test_work_waiting_at_start_is_handed_out_once_in_order(
    make_relay: RelayFactory,
) -> None:
    # Given an NS with three instances of one run waiting for computer 7
    ns = FakeNS(work=[work_for(7, [11, 12, 13])])
    server = await make_relay(ns)

    # When the task server starts and the agent is tickled
    await server.start()
    try:
        async with asyncio.timeout(1.0):
            assert await server.tickler.wait(7, timeout=1.0)
        first = await server.fetch_work(7)
        again = await server.fetch_work(7)
    finally:
        await server.stop()

    # Then its poll gets them in the NS's order, once; the next poll nothing
    assert [w.instance_id for w in first] == [11, 12, 13]
    assert {w.run_id for w in first} == {5} and again == []


async def test_work_created_later_reaches_the_agent_through_the_events_long_poll(
    make_relay: RelayFactory,
) -> None:
    # Given a running task server that has fetched the (no) work there was at start
    ns = FakeNS()
    server = await make_relay(ns)
    await server.start()
    try:
        async with asyncio.timeout(1.0):
            while "POST /api/ts/work" not in ns.requests:
                await asyncio.sleep(0.001)

        # When work is created for computer 7 (the NS answers the events long poll)
        ns.add_work(work_for(7, [21]))

        # Then the task server fetches it and tickles the agent (R6), whose poll gets it
        assert await server.tickler.wait(7, timeout=1.0)
        assert [w.instance_id for w in await server.fetch_work(7)] == [21]
    finally:
        await server.stop()
