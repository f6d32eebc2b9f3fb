"""The on-disk status spool (R8): durable until acknowledged, safe to resend."""

from __future__ import annotations

import asyncio
from pathlib import Path

from taskfleet.protocol.messages import StatusEvent
from taskfleet.protocol.spool import Spool


def event(n: int) -> StatusEvent:
    return StatusEvent(id=f"ev-{n}", instance_id=n, computer_id=1, state="Running", at=float(n))


def test_events_survive_a_new_spool_object_until_acknowledged(tmp_path: Path) -> None:
    # Given events put in a spool
    Spool(tmp_path).put([event(1), event(2), event(3)])
    # When the process "restarts" (a new Spool over the same directory)
    spool = Spool(tmp_path)
    # Then every event is still there, and only acknowledged ones leave
    assert [e.id for e in spool.pending()] == ["ev-1", "ev-2", "ev-3"]
    spool.ack(["ev-2"])
    assert sorted(e.id for e in Spool(tmp_path).pending()) == ["ev-1", "ev-3"]


def test_putting_the_same_event_twice_keeps_one(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.put([event(1)])
    spool.put([event(1)])
    assert len(spool) == 1


def test_unreadable_file_is_moved_aside_not_blocking(tmp_path: Path) -> None:
    # Given a spool with one event, and a file beside it that is not JSON
    Spool(tmp_path).put([event(1)])
    (tmp_path / "broken.json").write_text("{not json")
    # When the spool is opened again (a restart)
    spool = Spool(tmp_path)
    # Then the good event is still pending and the broken file is set aside
    assert [e.id for e in spool.pending()] == ["ev-1"]
    assert (tmp_path / "broken.bad").exists()


def test_one_file_per_batch_removed_once_every_event_is_acknowledged(tmp_path: Path) -> None:
    # Given a batch of three events in one put
    spool = Spool(tmp_path)
    spool.put([event(1), event(2), event(3)])
    assert len(list(tmp_path.glob("*.json"))) == 1
    # When two of them are acknowledged, the file stays for the third alone
    spool.ack(["ev-1", "ev-3"])
    assert len(list(tmp_path.glob("*.json"))) == 1
    assert [e.id for e in spool.pending()] == ["ev-2"]
    assert [e.id for e in Spool(tmp_path).pending()] == ["ev-2"]
    # Then acknowledging the last removes it
    spool.ack(["ev-2"])
    assert not list(tmp_path.glob("*.json"))
    assert len(spool) == 0


def test_an_event_from_the_older_one_file_per_event_layout_is_read(tmp_path: Path) -> None:
    # Given a spool file written by an earlier version: one JSON object per file
    (tmp_path / "ev-7.json").write_text(
        '{"id": "ev-7", "instance_id": 7, "computer_id": 1, "state": "Running", "at": 7.0}'
    )
    # Then it is pending, and acknowledging it removes the file
    spool = Spool(tmp_path)
    assert [e.id for e in spool.pending()] == ["ev-7"]
    spool.ack(["ev-7"])
    assert not (tmp_path / "ev-7.json").exists()


async def test_concurrent_puts_share_one_write(tmp_path: Path) -> None:
    # Given a spool and many callers putting events at the same moment
    spool = Spool(tmp_path)
    await asyncio.gather(*(spool.put_soon([event(n)]) for n in range(1, 51)))
    # Then every event is durable, in far fewer files than events
    assert len(Spool(tmp_path)) == 50
    assert len(list(tmp_path.glob("*.json"))) < 10


def test_leftover_temporary_files_from_a_crash_are_dropped(tmp_path: Path) -> None:
    (tmp_path / "ev-9.tmp").write_text('{"half')
    assert Spool(tmp_path).pending() == []
    assert not (tmp_path / "ev-9.tmp").exists()
