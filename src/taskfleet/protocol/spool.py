"""An on-disk spool of status events that survives restarts (R8).

One file per event, written to a temporary name, fsynced and renamed, so a
crash leaves either the whole event or nothing. An event leaves the spool
only when its receiver has acknowledged it. Used by the agent and the task
server alike.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from taskfleet.protocol.messages import StatusEvent, from_json, to_json


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        for leftover in directory.glob("*.tmp"):
            leftover.unlink(missing_ok=True)

    def _path(self, event_id: str) -> Path:
        # Event ids come from peers: keep only characters that are safe in a file name.
        safe = "".join(c for c in event_id if c.isalnum() or c in "-_")
        if not safe:
            raise ValueError("status event id is empty")
        return self.directory / f"{safe}.json"

    def put(self, events: list[StatusEvent]) -> None:
        """Store events durably; returns only after they are on disk."""
        for event in events:
            final = self._path(event.id)
            if final.exists():
                continue
            # A unique temporary name: the same event may be put by two threads at once.
            tmp = final.with_name(f"{final.stem}.{uuid.uuid4().hex[:8]}.tmp")
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(to_json(event), fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        if events:
            _fsync_dir(self.directory)

    def pending(self, limit: int = 500) -> list[StatusEvent]:
        """The oldest unacknowledged events, oldest first."""
        paths = sorted(self.directory.glob("*.json"), key=_mtime)[:limit]
        events = []
        for path in paths:
            try:
                events.append(from_json(StatusEvent, json.loads(path.read_text("utf-8"))))
            except (OSError, ValueError, TypeError):
                # A file we cannot read would block the spool forever; move it aside.
                path.rename(path.with_suffix(".bad"))
        return events

    def ack(self, event_ids: list[str]) -> None:
        for event_id in event_ids:
            self._path(event_id).unlink(missing_ok=True)

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("*.json"))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
