"""An on-disk spool of status events that survives restarts (R8).

Events are written in batches: one file per ``put``, written to a temporary
name, fsynced and renamed (then the directory is fsynced), so a crash leaves
either the whole batch or nothing. ``put_soon`` gathers the batches of
concurrent callers into one write (group commit): a task server taking status
from thousands of agents pays one fsync per moment, not one per event.

An event leaves the spool only when its receiver has acknowledged it; a file
is removed once every event in it is acknowledged. Until then its events are
held in memory too, oldest first, so ``pending`` and ``len`` never read the
disk. After a crash, a partly acknowledged file is sent again whole: the
receiver recognises the resent ids and ignores them.

Used by the agent and the task server alike (standard library only).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import threading
import time
import uuid
from pathlib import Path

from taskfleet.errors import InvalidInput
from taskfleet.protocol.messages import StatusEvent, event_json, from_json


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        # Guarded by _lock: callers put and ack from worker threads.
        self._lock = threading.Lock()
        self._events: dict[str, StatusEvent] = {}  # insertion order: oldest first
        self._file_of: dict[str, Path] = {}
        self._left: dict[Path, dict[str, None]] = {}  # per file: ids not acknowledged, in order
        self._waiting: list[tuple[list[StatusEvent], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._load()

    def _load(self) -> None:
        for leftover in self.directory.glob("*.tmp"):
            leftover.unlink(missing_ok=True)
        for path in sorted(self.directory.glob("*.json"), key=_mtime):
            try:
                data = json.loads(path.read_text("utf-8"))
                # A list is a batch; a single object is one event (the older layout).
                batch = [
                    from_json(StatusEvent, d) for d in (data if isinstance(data, list) else [data])
                ]
            except (OSError, ValueError, TypeError, InvalidInput):
                # A file we cannot read would block the spool forever; move it aside.
                path.rename(path.with_suffix(".bad"))
                continue
            self._index(path, batch)

    def _index(self, path: Path, events: list[StatusEvent]) -> None:
        left = self._left.setdefault(path, {})
        for event in events:
            if event.id in self._events:
                continue
            self._events[event.id] = event
            self._file_of[event.id] = path
            left[event.id] = None
        if not left:
            del self._left[path]
            path.unlink(missing_ok=True)

    def put(self, events: list[StatusEvent]) -> None:
        """Store events durably; returns only after they are on disk."""
        with self._lock:
            events = [e for e in _unique(events) if e.id not in self._events]
        if not events:
            return
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        final = self.directory / f"{name}.json"
        tmp = self.directory / f"{name}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json.dumps([event_json(e) for e in events]))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        _fsync_dir(self.directory)
        with self._lock:
            self._index(final, events)

    async def put_soon(self, events: list[StatusEvent]) -> None:
        """``put`` from the event loop, sharing one write with every concurrent caller."""
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((events, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_waiting())
        await done

    async def _write_waiting(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, []
            try:
                await asyncio.to_thread(self.put, [e for events, _ in group for e in events])
            except Exception as exc:
                for _, done in group:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _, done in group:
                    if not done.done():
                        done.set_result(None)

    def pending(self, limit: int = 500) -> list[StatusEvent]:
        """The oldest unacknowledged events, oldest first."""
        with self._lock:
            return list(itertools.islice(self._events.values(), limit))

    def ack(self, event_ids: list[str]) -> None:
        touched: set[Path] = set()
        with self._lock:
            for event_id in event_ids:
                if self._events.pop(event_id, None) is None:
                    continue
                path = self._file_of.pop(event_id)
                left = self._left.get(path)
                if left is not None:
                    left.pop(event_id, None)
                    touched.add(path)
            emptied = [p for p in touched if not self._left.get(p)]
            for path in emptied:
                self._left.pop(path, None)
            rest = {p: [self._events[i] for i in self._left[p]] for p in touched if p in self._left}
        for path in emptied:
            path.unlink(missing_ok=True)
        for path, events in rest.items():
            tmp = path.with_name(f"{path.stem}.{uuid.uuid4().hex[:8]}.tmp")
            tmp.write_text(json.dumps([event_json(e) for e in events]), "utf-8")
            os.replace(tmp, path)

    def __len__(self) -> int:
        return len(self._events)


def _unique(events: list[StatusEvent]) -> list[StatusEvent]:
    seen: set[str] = set()
    unique = []
    for event in events:
        if event.id not in seen:
            seen.add(event.id)
            unique.append(event)
    return unique


def _mtime(path: Path) -> tuple[float, str]:
    try:
        return path.stat().st_mtime, path.name
    except OSError:
        return 0.0, path.name


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
