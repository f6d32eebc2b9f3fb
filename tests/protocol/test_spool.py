"""The on-disk status spool (R8): durable until acknowledged, safe to resend."""

from __future__ import annotations

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
    spool = Spool(tmp_path)
    spool.put([event(1)])
    (tmp_path / "broken.json").write_text("{not json")
    assert [e.id for e in spool.pending()] == ["ev-1"]
    assert (tmp_path / "broken.bad").exists()


def test_leftover_temporary_files_from_a_crash_are_dropped(tmp_path: Path) -> None:
    (tmp_path / "ev-9.tmp").write_text('{"half')
    assert Spool(tmp_path).pending() == []
    assert not (tmp_path / "ev-9.tmp").exists()
