"""Hubs of several NS replicas agree through PostgreSQL; duties run on one at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from taskfleet.ns import replicas, singleton
from taskfleet.ns.hub import Hub, Notice
from taskfleet.storage import database

PG = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)


class Stream:
    """What PostgreSQL does for the link: one order of delivery for every replica."""

    def __init__(self, *hubs: Hub) -> None:
        self.sent: list[tuple[Hub, Notice]] = []
        self.hubs = list(hubs)
        for hub in hubs:
            self.join(hub)

    def join(self, hub: Hub) -> None:
        if hub not in self.hubs:
            self.hubs.append(hub)
        hub.publish = lambda notice: self.sent.append((hub, notice))

    async def deliver(self) -> None:
        sent, self.sent = self.sent, []
        for sender, notice in sent:
            for hub in self.hubs:
                await hub.apply(notice, own=hub is sender)


async def test_replicas_that_change_the_same_values_at_once_end_up_agreeing() -> None:
    # Given two linked replicas that agree
    a, b = Hub(), Hub()
    stream = Stream(a, b)
    stream.sent.append((a, a.reset_notice()))
    await stream.deliver()
    before = a.version(7)
    assert before == b.version(7) and a.agents_epoch == b.agents_epoch

    # When both wake task server 7 and change the agents before either hears of the other
    await a.bump(7)
    await b.bump(7)
    a.agents_changed()
    b.agents_changed()
    assert a.version(7) != b.version(7) != before  # each handed out a value of its own
    await stream.deliver()

    # Then both settle on the value delivered last, which is a new one
    assert a.version(7) == b.version(7) != before
    assert a.agents_epoch == b.agents_epoch


async def test_a_remote_change_wakes_waiters_tickles_local_agents_and_run_followers() -> None:
    a, b = Hub(), Hub()
    stream = Stream(a, b)
    since = b.version(3)
    waiting = asyncio.create_task(b.wait(3, since, timeout=30))
    with b.watch_run(11) as followed:
        await asyncio.sleep(0.01)
        # When replica A has work for task server 3 and for a computer the NS serves,
        # and status for run 11
        await a.notify([(100, 3), (101, None)])
        a.runs_changed([11])
        assert not waiting.done() and not followed.is_set()
        await stream.deliver()
        # Then replica B wakes its events wait, its run follower and its own agent
        async with asyncio.timeout(1):
            assert await waiting == a.version(3) != since
        assert followed.is_set()
    assert b.local_pending == {101}


async def test_a_replica_joining_wakes_every_long_poll_everywhere() -> None:
    a = Hub()
    stream = Stream(a)
    await a.bump(1)
    await stream.deliver()
    waiting = asyncio.create_task(a.wait(1, a.version(1), timeout=30))
    await asyncio.sleep(0.01)
    # When a new replica joins and sends its reset
    c = Hub()
    stream.join(c)
    stream.sent.append((c, c.reset_notice()))
    await stream.deliver()
    # Then the wait on the old replica answers, and both give every task server one version
    async with asyncio.timeout(1):
        assert await waiting == c.version(1)
    assert a.version(1) == c.version(1) and a.version(99) == c.version(99)
    assert a.agents_epoch == c.agents_epoch


def test_a_large_notice_is_split_under_the_payload_limit_and_read_back_whole() -> None:
    notice = Notice(
        versions={i: 2**52 + i for i in range(2000)},
        local=list(range(10**9, 10**9 + 5000)),
        runs=list(range(3000)),
        agents_epoch=42,
        reset=7,
    )
    payloads = replicas.encode(notice, "me")
    assert len(payloads) > 5
    assert all(len(p.encode()) <= replicas.PAYLOAD_MAX for p in payloads)
    back = Notice()
    for payload in payloads:
        part, origin = replicas.decode(payload)
        assert origin == "me"
        back.merge(part)
    assert back == notice
    # the reset and epoch come first, before the versions they would otherwise clear
    first, _ = replicas.decode(payloads[0])
    assert first.reset == 7 and first.agents_epoch == 42


@pytest.mark.parametrize("payload", ["", "[]", '{"v": {}}', '{"o": "x", "l": ["a"]}', "{"])
def test_a_notification_that_is_not_ours_is_refused(payload: str) -> None:
    with pytest.raises((ValueError, TypeError)):
        replicas.decode(payload)


async def _terminate(db_url: str, application_name: str) -> int:
    conn = await asyncpg.connect(db_url)
    try:
        killed: int = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = $1 AND datname = current_database()",
            application_name,
        )
        return killed
    finally:
        await conn.close()


@pytest.mark.postgres
@PG
async def test_two_links_carry_changes_both_ways_and_survive_a_dropped_connection(
    db_url: str,
) -> None:
    engine = database.create_engine(db_url)
    a, b = Hub(), Hub()
    link_a, link_b = replicas.ReplicaLink(a, engine), replicas.ReplicaLink(b, engine)
    try:
        await link_a.start()
        await link_b.start()
        assert link_a.ready.is_set() and link_b.ready.is_set()
        # Given both links up, they agree (B's reset reached A too)
        await asyncio.sleep(0.2)
        assert a.version(5) == b.version(5) and a.agents_epoch == b.agents_epoch

        # When A wakes task server 5, B's waiter answers within a moment, with A's version
        since = b.version(5)
        async with asyncio.timeout(2):
            waiting = asyncio.create_task(b.wait(5, since, timeout=30))
            await asyncio.sleep(0.05)
            await a.bump(5)
            assert await waiting == a.version(5) != since
        # and the other way round, run followers and local agents too
        with a.watch_run(9) as followed:
            b.runs_changed([9])
            await b.notify([(77, None)])
            async with asyncio.timeout(2):
                await followed.wait()
                while 77 not in a.local_pending:
                    await asyncio.sleep(0.01)

        # When B's connection is cut, B reconnects and its reset wakes A's waiter
        since = a.version(5)
        waiting = asyncio.create_task(a.wait(5, since, timeout=30))
        link_b.ready.clear()
        assert await _terminate(db_url, "taskfleet ns replicas") == 2  # both links' sessions
        async with asyncio.timeout(5):
            await link_b.ready.wait()
            assert await waiting != since
        # and changes cross again afterwards
        await asyncio.sleep(0.2)
        since = a.version(6)
        async with asyncio.timeout(2):
            waiting = asyncio.create_task(a.wait(6, since, timeout=30))
            await asyncio.sleep(0.05)
            await b.bump(6)
            assert await waiting == b.version(6)
    finally:
        await link_a.stop()
        await link_b.stop()
        await engine.dispose()


@pytest.mark.postgres
@PG
async def test_a_duty_runs_on_one_replica_and_moves_when_it_stops(db_url: str) -> None:
    engine = database.create_engine(db_url)
    rounds = {"a": 0, "b": 0}

    def duty(name: str) -> Callable[[], Awaitable[None]]:
        async def one_round() -> None:
            rounds[name] += 1

        return one_round

    def start(name: str) -> asyncio.Task[None]:
        return asyncio.create_task(
            singleton.run_duty(engine, "test duty", 0.05, duty(name), takeover_s=0.1)
        )

    tasks = {"a": start("a")}
    await asyncio.sleep(0.3)
    tasks["b"] = start("b")
    try:
        # Given both replicas running it for a second: only the first did it
        await asyncio.sleep(1.0)
        assert rounds["a"] >= 5 and rounds["b"] == 0, rounds
        # When that replica stops, the other takes the duty over within a moment
        tasks.pop("a").cancel()
        await asyncio.sleep(1.0)
        assert rounds["b"] >= 3, rounds
        # and the lock is held by exactly one session, B's
        conn = await asyncpg.connect(db_url)
        try:
            holders = await conn.fetch(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()"
            )
        finally:
            await conn.close()
        assert [h[0] for h in holders] == ["taskfleet ns duty test duty"]
        rounds_a = rounds["a"]
        await asyncio.sleep(0.3)
        assert rounds["a"] == rounds_a  # the stopped one does no more
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        await engine.dispose()
