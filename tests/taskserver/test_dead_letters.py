"""The task server's status relay and dead letters, without processes: what is set aside,
what is sent, and that the dead-letter file stays bounded and survives a restart (R12)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from taskfleet.errors import InvalidInput, PayloadTooLarge, Unavailable
from taskfleet.protocol.messages import StatusAck, StatusEvent
from taskfleet.protocol.spool import Spool
from taskfleet.taskserver.dead_letters import DeadLetters
from taskfleet.taskserver.metrics import TaskServerMetrics
from taskfleet.taskserver.status_relay import StatusRelay, by_size


def event(n: int, **fields: object) -> StatusEvent:
    values: dict[str, object] = {"state": "Succeeded", "at": 1000.0 + n, "output": f"out {n}"}
    values.update(fields)
    return StatusEvent(f"ev-{n}", n, 1, **values)  # type: ignore[arg-type]


class FakeNS:
    """Refuses whole requests of more than 8 events (413) or holding a 'poison' event
    (400); rejects events for instances from 900 up, as unknown."""

    def __init__(self) -> None:
        self.requests: list[list[str]] = []
        self.applied: list[str] = []
        self.down = False

    async def send(self, events: list[StatusEvent]) -> StatusAck:
        self.requests.append([e.id for e in events])
        if self.down:
            raise Unavailable("the NS did not answer")
        if len(events) > 8:
            raise PayloadTooLarge("request body is larger than the limit")
        if any(e.state == "poison" for e in events):
            raise InvalidInput("events.0.state: poison")
        rejected = [e.id for e in events if e.instance_id >= 900]
        self.applied += [e.id for e in events if e.id not in rejected]
        return StatusAck(
            accepted=[e.id for e in events if e.id not in rejected],
            rejected=rejected,
            reasons=dict.fromkeys(rejected, "no instance"),
        )


def relay(tmp_path: Path, ns: FakeNS) -> StatusRelay:
    spool = Spool(tmp_path / "spool")
    return StatusRelay(spool, DeadLetters(tmp_path), TaskServerMetrics(), ns.send)


def test_every_event_leaves_the_spool_delivered_or_set_aside_with_why(tmp_path: Path) -> None:
    # Given a spool holding good events, ones failing a field check, one the NS refuses
    # whole, one it rejects, and too many for one request
    ns = FakeNS()
    r = relay(tmp_path, ns)
    good = [event(n) for n in range(1, 13)]
    odd = [
        event(20, at=float("nan")),
        event(21, state="Run\x00ning"),
        event(22, state="poison"),
        event(923),
    ]
    r.spool.put(good[:6] + odd + good[6:])

    # When the relay sends what its spool holds
    asyncio.run(r.relay_batch(r.spool.pending(100)))

    # Then every good event was applied, in requests the NS took
    assert sorted(ns.applied) == sorted(e.id for e in good)
    # And the others were set aside, each with its reason, and the spool is empty
    letters = {d["event"]["id"]: d["reason"] for d in r.dead_letters.read()}
    assert set(letters) == {"ev-20", "ev-21", "ev-22", "ev-923"}
    assert "refused by this task server" in letters["ev-20"] and "at" in letters["ev-20"]
    assert "NUL" in letters["ev-21"]
    assert letters["ev-22"] == "the NS refused it: events.0.state: poison"
    assert letters["ev-923"] == "the NS rejected it: no instance"
    assert len(r.spool) == 0
    assert r.dead_letters.count == 4
    assert r.metrics.registry.get_sample_value("taskfleet_ts_dead_letters_total") == 4


def test_when_the_ns_is_away_nothing_is_set_aside(tmp_path: Path) -> None:
    ns = FakeNS()
    ns.down = True
    r = relay(tmp_path, ns)
    r.spool.put([event(1), event(2)])
    try:
        asyncio.run(r.relay_batch(r.spool.pending(100)))
    except Unavailable:
        pass
    assert len(r.spool) == 2
    assert r.dead_letters.count == 0


def test_requests_are_bounded_in_size() -> None:
    events = [event(n, output="x" * 40_000) for n in range(10)]
    requests = by_size(events, budget=100_000)
    assert [len(r) for r in requests] == [1] * 10  # 6 bytes a character, at the worst
    assert by_size([event(1, output="x" * 10**6)], budget=10) == [[event(1, output="x" * 10**6)]]


def test_the_dead_letter_file_is_bounded_and_counted_again_after_a_restart(
    tmp_path: Path,
) -> None:
    # Given a dead-letter file of at most ~2 KiB
    letters = DeadLetters(tmp_path, max_bytes=2048)
    # When many events are set aside, one by one
    for n in range(40):
        letters.park([(event(n, output="y" * 50), f"reason {n}")])
    # Then at most twice the bound is kept, the oldest gone first
    sizes = [p.stat().st_size for p in (letters.path, letters.older) if p.exists()]
    assert sum(sizes) <= 2 * 2048
    kept = [json.loads(line)["event"]["id"] for line in letters.older.read_text().splitlines()]
    kept += [json.loads(line)["event"]["id"] for line in letters.path.read_text().splitlines()]
    assert kept == [f"ev-{n}" for n in range(40 - len(kept), 40)]
    assert letters.count == len(kept) and letters.last_reason == "reason 39"
    # And after a restart the count and the latest reason are read back from the files
    again = DeadLetters(tmp_path, max_bytes=2048)
    assert (again.count, again.last_reason) == (len(kept), "reason 39")


def test_a_lone_surrogate_is_kept_exactly_in_the_ascii_file(tmp_path: Path) -> None:
    letters = DeadLetters(tmp_path)
    letters.park([(event(1, output="half \ud800 a character"), "why \x00 not")])
    assert letters.path.read_bytes().isascii()
    (entry,) = letters.read()
    assert entry["event"]["output"] == "half \ud800 a character"
    assert letters.last_reason == "why \u2400 not"  # the heartbeat's copy: storable text


def test_events_checked_at_the_edge_are_not_checked_again_but_older_ones_are(
    tmp_path: Path,
) -> None:
    # Given a spool from before a restart holding an event no field check passes
    ns = FakeNS()
    r = relay(tmp_path, ns)
    r.spool.put([event(1, at=float("nan"))])
    # And events this process took through its agent endpoint, one resending that id
    taken = [event(1), event(2)]
    r.spool.put(taken)
    r.checked_at_the_edge(taken)

    # When the relay sends what its spool holds
    asyncio.run(r.relay_batch(r.spool.pending(100)))

    # Then the older event was still checked and set aside, the new one sent
    assert ns.applied == ["ev-2"]
    assert [d["event"]["id"] for d in r.dead_letters.read()] == ["ev-1"]
    assert len(r.spool) == 0
