"""The agent's task server: failover after three failed calls (R4), refusals, the
generation that keeps concurrent loops from failing over twice, the revoked-certificate
check, the NS's bounded backoff, and the poll and channel (R5, R6).

Unit tests: the real ``NsLink``, ``TaskServer`` and ``Polling``; only the network is a
double (``httpx.MockTransport``), standing in for the NS and two task servers.
"""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from taskfleet.agent import ns_link, task_server
from taskfleet.agent.clients import Retired
from taskfleet.agent.ns_link import NsLink
from taskfleet.agent.options import AgentOptions
from taskfleet.agent.polling import Polling
from taskfleet.agent.task_server import FAILOVER_AFTER, TaskServer
from taskfleet.errors import NotApproved, Unavailable
from taskfleet.protocol import pki
from taskfleet.protocol.messages import WorkItem

CREDENTIAL = "tf1.agent.7.s3cret"


def assignment(ts: int, scheme: str) -> dict[str, Any]:
    return {
        "url": f"{scheme}://ts{ts}.test",
        "task_server_id": ts,
        "task_server_name": f"ts{ts}",
        "step": "policy",
        "reason": "first available on the list",
        "settings": {},
    }


def error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": code, "message": message})


@dataclass
class Network:
    """The NS (``ns.test``) and task servers (``tsN.test``) as the agent reaches them."""

    scheme: str = "http"
    assign_to: list[int] = field(default_factory=lambda: [1, 2])  # the NS's answers in turn
    ns_unavailable: int = 0  # assignment requests the NS answers 503 first
    asked: list[dict[str, Any]] = field(default_factory=list)  # AssignmentRequest bodies
    down: set[str] = field(default_factory=set)  # task servers that do not answer
    refuse: dict[str, httpx.Response] = field(default_factory=dict)  # host -> its refusal
    calls: list[str] = field(default_factory=list)  # "host path", task servers only
    crl: dict[str, Any] | None = None  # /api/ca/crl
    peer_der: dict[str, bytes] = field(default_factory=dict)  # host -> its certificate
    gate: asyncio.Event | None = None  # task servers answer once set
    channel: list[dict[str, Any]] = field(default_factory=list)  # channel replies, in turn
    poll_settings: dict[str, Any] = field(default_factory=dict)
    ns_delay_s: float = 0.0  # how long the NS takes to answer

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host == "ns.test":
            await asyncio.sleep(self.ns_delay_s)
            return self.ns(request)
        self.calls.append(f"{host} {request.url.path}")
        if self.gate is not None:
            await self.gate.wait()
        if host in self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if host in self.refuse:
            return self.refuse[host]
        ext: dict[str, Any] = {}
        if host in self.peer_der:
            ext["network_stream"] = PeerStream(self.peer_der[host])
        if request.url.path == "/agent/channel":
            if not self.channel:
                await asyncio.Event().wait()  # a long poll with no news
            return httpx.Response(200, json=self.channel.pop(0), extensions=ext)
        work = {"work": [], "settings": self.poll_settings}
        return httpx.Response(200, json=work, extensions=ext)

    def ns(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/ca/crl" and self.crl is not None:
            return httpx.Response(200, json=self.crl)
        assert request.url.path == "/api/agent/assignment", request.url.path
        assert request.headers["authorization"] == f"Bearer {CREDENTIAL}"
        if self.ns_unavailable:
            self.ns_unavailable -= 1
            return error(503, "unavailable", "the database is away")
        self.asked.append(json.loads(request.content))
        ts = self.assign_to.pop(0) if len(self.assign_to) > 1 else self.assign_to[0]
        return httpx.Response(200, json=assignment(ts, self.scheme))


class PeerStream:
    """What ``response.extensions["network_stream"]`` offers over TLS: the peer's certificate."""

    def __init__(self, der: bytes) -> None:
        self.der = der

    def get_extra_info(self, name: str) -> Any:
        return self if name == "ssl_object" else None

    def getpeercert(self, binary_form: bool = False) -> bytes:
        return self.der


@dataclass
class Agent:
    net: Network
    ns: NsLink
    task_server: TaskServer
    assigned: list[int]

    @property
    def host(self) -> str:
        assert self.task_server.assignment is not None
        return httpx.URL(self.task_server.assignment.url).host

    def failed_over_from(self) -> list[int | None]:
        """What each assignment request after the first named as the failed task server."""
        return [asked["failed_task_server"] for asked in self.net.asked[1:]]


AgentFactory = Callable[[Network], Awaitable[Agent]]


@pytest.fixture
async def make_agent(tmp_path: Path) -> AsyncIterator[AgentFactory]:
    """An enrolled agent (identity on disk) whose network is the given ``Network``."""
    made: list[Agent] = []
    retired = Retired()

    async def make(net: Network) -> Agent:
        state = tmp_path / "state"
        state.mkdir(exist_ok=True)
        (state / "identity.json").write_text(json.dumps({"credential": CREDENTIAL}))
        options = AgentOptions(
            ns_url=f"{net.scheme}://ns.test",
            state_dir=state,
            insecure_http=net.scheme == "http",
        )
        ns = NsLink(options, retired, httpx.MockTransport(net))
        assigned: list[int] = []
        server = TaskServer(ns, retired, lambda: assigned.append(server.generation))
        made.append(Agent(net, ns, server, assigned))
        return made[-1]

    yield make
    retired.cancel()
    for agent in made:
        await agent.ns.client.aclose()
        if agent.task_server.client is not None:
            await agent.task_server.client.aclose()


async def poll(agent: Agent) -> Any:
    return await agent.task_server.call("GET", "/agent/poll")


def recorder(waits: list[float]) -> Callable[[float], float]:
    """Stands in for ``jittered``: notes the wait asked for, and waits not at all."""

    def wait(seconds: float) -> float:
        waits.append(seconds)
        return 0.0

    return wait


# --- failover (R4) ---------------------------------------------------------------------


async def test_after_three_unanswered_calls_the_agent_asks_the_ns_for_another(
    make_agent: AgentFactory,
) -> None:
    # Given an agent assigned ts1, which stops answering
    agent = await make_agent(Network(down={"ts1.test"}))
    await agent.task_server.assign()
    assert agent.host == "ts1.test"

    # When two calls fail
    for _ in range(FAILOVER_AFTER - 1):
        with pytest.raises(Unavailable):
            await poll(agent)
    # Then it keeps its task server (R4 stickiness)
    assert agent.host == "ts1.test" and agent.failed_over_from() == []

    # When the third fails too
    with pytest.raises(Unavailable):
        await poll(agent)

    # Then it asked the NS again, naming ts1 as failed and why, and moved to ts2
    assert agent.failed_over_from() == [1]
    assert "did not answer" in agent.net.asked[1]["reason"]
    assert agent.host == "ts2.test"
    assert agent.task_server.failures == 0 and agent.assigned == [1, 2]
    # and its next call goes there
    assert (await poll(agent))["work"] == []
    assert agent.net.calls[-1] == "ts2.test /agent/poll"


async def test_an_answered_call_starts_the_count_again(make_agent: AgentFactory) -> None:
    # Given an agent on ts1, which fails two calls out of three
    net = Network()
    agent = await make_agent(net)
    await agent.task_server.assign()

    # When it fails twice, answers once, and fails twice again
    for answers in (False, False, True, False, False):
        net.down = set() if answers else {"ts1.test"}
        if answers:
            await poll(agent)
        else:
            with pytest.raises(Unavailable):
                await poll(agent)

    # Then no three failed in a row: it stays on ts1
    assert agent.host == "ts1.test" and agent.failed_over_from() == []
    assert agent.task_server.failures == 2


async def test_a_refusing_task_server_is_left_at_once(make_agent: AgentFactory) -> None:
    # Given an agent on ts1, which says it is not approved (R1)
    net = Network(refuse={"ts1.test": error(403, "not_approved", "ts1 is not approved")})
    agent = await make_agent(net)
    await agent.task_server.assign()

    # When one call is refused
    with pytest.raises(NotApproved):
        await poll(agent)

    # Then the agent asked the NS again at once, naming no failed server (it answered),
    # and moved to ts2
    assert agent.failed_over_from() == [None]
    assert net.asked[1]["reason"] == "ts1 is not approved"
    assert agent.host == "ts2.test"


async def test_refused_and_sent_back_to_the_same_task_server_the_agent_waits(
    make_agent: AgentFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an agent on ts1, which refuses it, and an NS that assigns ts1 again
    waits: list[float] = []
    monkeypatch.setattr(task_server, "jittered", recorder(waits))
    refusal = error(409, "not_assigned", "computer 7 is not assigned to ts1")
    agent = await make_agent(Network(assign_to=[1], refuse={"ts1.test": refusal}))
    await agent.task_server.assign()

    # When a call is refused
    with pytest.raises(Exception, match="not assigned"):
        await poll(agent)

    # Then it waits about a second before the caller tries again: it does not hammer
    assert agent.host == "ts1.test" and waits == [1.0]


# --- generations: concurrent loops fail over once -------------------------------------


async def test_calls_of_an_old_generation_do_not_fail_over_again(
    make_agent: AgentFactory,
) -> None:
    # Given an agent on ts1 with five calls in flight (poll, channel, status...), and an
    # NS that takes a moment to answer
    net = Network(assign_to=[1, 2, 3], down={"ts1.test"}, gate=asyncio.Event())
    agent = await make_agent(net)
    await agent.task_server.assign()
    net.ns_delay_s = 0.01
    calls = [asyncio.create_task(poll(agent)) for _ in range(5)]
    while len(net.calls) < 5:
        await asyncio.sleep(0)

    # When ts1 fails them all at once
    net.gate.set()  # type: ignore[union-attr]
    results = await asyncio.gather(*calls, return_exceptions=True)

    # Then all five fail, but only the third asked the NS: the others, from the
    # generation before, see that it moved on and leave ts2 alone
    assert all(isinstance(r, Unavailable) for r in results)
    assert agent.failed_over_from() == [1]
    assert agent.host == "ts2.test" and agent.task_server.generation == 2


async def test_failures_of_the_old_task_server_do_not_count_against_the_new_one(
    make_agent: AgentFactory,
) -> None:
    # Given an agent on ts1 with three calls in flight that fail it over to ts2, and two
    # more calls to ts1 still in flight
    first, late = asyncio.Event(), asyncio.Event()
    net = Network(assign_to=[1, 2, 3], down={"ts1.test"}, gate=first)
    agent = await make_agent(net)
    await agent.task_server.assign()
    failing = [asyncio.create_task(poll(agent)) for _ in range(FAILOVER_AFTER)]
    while len(net.calls) < FAILOVER_AFTER:
        await asyncio.sleep(0)
    net.gate = late
    stale = [asyncio.create_task(poll(agent)) for _ in range(2)]
    while len(net.calls) < FAILOVER_AFTER + 2:
        await asyncio.sleep(0)
    first.set()
    await asyncio.gather(*failing, return_exceptions=True)
    assert agent.host == "ts2.test"

    # When the two late calls to ts1 fail after the switch, and then ts2 fails once
    late.set()
    await asyncio.gather(*stale, return_exceptions=True)
    net.gate = None
    net.down.add("ts2.test")
    with pytest.raises(Unavailable):
        await poll(agent)

    # Then the agent stays on ts2: one failure of its own is not three (R4)
    assert agent.host == "ts2.test" and agent.failed_over_from() == [1]


# --- the task server's certificate ----------------------------------------------------


def name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def revocation_list(ca_key: pki.PrivateKey, ca: x509.Certificate, serial: int) -> str:
    now = datetime.datetime.now(datetime.UTC)
    revoked = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.subject)
        .last_update(now - datetime.timedelta(minutes=5))
        .next_update(now + datetime.timedelta(days=1))
        .add_revoked_certificate(revoked)
        .sign(ca_key, hashes.SHA256())
    )
    return crl.public_bytes(serialization.Encoding.PEM).decode()


async def test_a_task_server_with_a_revoked_certificate_is_refused(
    make_agent: AgentFactory, tmp_path: Path
) -> None:
    # Given the NS's CA, an agent over TLS with its certificate, two task servers with
    # theirs, and ts1's on the NS's revocation list
    ca_key = pki.new_key()
    ca = pki.issue(ca_key, None, name("test CA"), ca_key.public_key(), days=10, ca=True)
    state = tmp_path / "state"
    state.mkdir()
    agent_key = pki.new_key()
    (state / pki.CA_FILE).write_bytes(pki.pem_of(ca))
    (state / pki.KEY_FILE).write_bytes(pki.key_pem(agent_key))
    mine = pki.issue(ca_key, ca, name("agent:7"), agent_key.public_key(), days=10)
    (state / pki.CERT_FILE).write_bytes(pki.pem_of(mine))
    servers = {
        host: pki.issue(ca_key, ca, name(host), pki.new_key().public_key(), days=10, server=True)
        for host in ("ts1.test", "ts2.test")
    }
    net = Network(
        scheme="https",
        crl={"crl": revocation_list(ca_key, ca, servers["ts1.test"].serial_number), "number": 1},
        peer_der={h: c.public_bytes(serialization.Encoding.DER) for h, c in servers.items()},
    )
    agent = await make_agent(net)
    await agent.task_server.assign()
    assert agent.host == "ts1.test"

    # When it calls ts1
    with pytest.raises(NotApproved, match="revoked certificate"):
        await poll(agent)

    # Then the reply was refused like an unapproved server's, and the agent moved to ts2,
    # whose certificate is good
    assert agent.failed_over_from() == [None] and agent.host == "ts2.test"
    assert (await poll(agent))["work"] == []


# --- the NS: bounded backoff ----------------------------------------------------------


async def test_the_ns_is_asked_again_with_backoff_doubling_up_to_a_minute(
    make_agent: AgentFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an NS that answers 503 to the first eight requests for a task server
    waits: list[float] = []
    monkeypatch.setattr(ns_link, "jittered", recorder(waits))
    agent = await make_agent(Network(ns_unavailable=8))

    # When the agent asks it for a task server
    await agent.task_server.assign()

    # Then it waited longer after each failure, never more than a minute, until answered
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert agent.host == "ts1.test"


# --- poll and channel (R5, R6) --------------------------------------------------------


async def test_a_poll_takes_the_settings_it_brings(make_agent: AgentFactory) -> None:
    # Given an agent on ts1, whose poll reply carries new settings
    net = Network(poll_settings={"task_request_interval_s": 120.0})
    agent = await make_agent(net)
    await agent.task_server.assign()
    taken: list[list[WorkItem]] = []
    polling = Polling(agent.task_server, lambda work, cancel: taken.append(work), 50.0)

    # When it polls once
    loop = asyncio.create_task(polling.poll_loop())
    while not taken:
        await asyncio.sleep(0)
    await stop(loop)

    # Then the new interval applies from this contact on (R5)
    assert agent.task_server.settings.task_request_interval_s == 120.0


async def test_a_tickle_on_the_channel_makes_the_agent_poll_at_once(
    make_agent: AgentFactory,
) -> None:
    # Given an agent on ts1 that polled (next poll in five minutes), and a tickle coming
    net = Network(channel=[{"tickle": True}])
    agent = await make_agent(net)
    await agent.task_server.assign()
    polling = Polling(agent.task_server, lambda work, cancel: None, 50.0)
    polls = asyncio.create_task(polling.poll_loop())
    while net.calls.count("ts1.test /agent/poll") < 1:
        await asyncio.sleep(0)

    # When the channel answers with the tickle
    channel = asyncio.create_task(polling.channel_loop())
    async with asyncio.timeout(1.0):
        while net.calls.count("ts1.test /agent/poll") < 2:
            await asyncio.sleep(0)

    # Then the agent polled again at once, not after its interval (R6)
    assert net.calls.index("ts1.test /agent/channel") < len(net.calls) - 1
    await stop(polls, channel)


async def stop(*tasks: asyncio.Task[None]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
