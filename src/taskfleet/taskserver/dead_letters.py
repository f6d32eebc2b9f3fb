"""Status events a task server will not relay, set aside where an admin can read them (R12).

An event lands here when the NS rejected it (``StatusAck.rejected``, with the reason:
an instance it does not know, a computer this task server never served, a value its
database refused) or when it fails this task server's own field checks before it is
sent (an event spooled by an older version). It is removed from the spool in the same
step, so one poisoned event never blocks the queue behind it, across restarts too.

The file is ``<state dir>/dead-letters.jsonl``: one JSON object a line,
``{"at": unix time, "reason": text, "event": {...}}``, ASCII only (any lone surrogate
is written as its ``\\udxxx`` escape, so the event is kept exactly as it was). It is
bounded: past ``max_bytes`` it becomes ``dead-letters.1.jsonl`` (replacing the one
before) and a new file starts, so at most twice ``max_bytes`` is kept and the oldest
go first. The heartbeat reports how many it holds and the latest reason; the console
and ``taskfleet taskserver list`` show them.

Writes are appended and fsynced before the events leave the spool: a crash in between
parks an event twice at most, never loses it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from taskfleet.protocol.fields import printable
from taskfleet.protocol.messages import StatusEvent, event_json

log = logging.getLogger("taskfleet.taskserver")
MAX_BYTES = 8 * 1024 * 1024
MAX_REASON = 500


class DeadLetters:
    def __init__(self, directory: Path, max_bytes: int = MAX_BYTES) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "dead-letters.jsonl"
        self.older = directory / "dead-letters.1.jsonl"
        self.max_bytes = max_bytes
        self._lock = threading.Lock()  # parked from worker threads
        self.count = 0  # events held in both files
        self.last_reason: str | None = None
        self._current = 0  # lines in ``path``
        for path in (self.older, self.path):
            lines, reason = _tally(path)
            self.count += lines
            self.last_reason = reason or self.last_reason
        self._current = _tally(self.path)[0]

    def park(self, rejected: list[tuple[StatusEvent, str]]) -> None:
        """Append ``(event, reason)`` pairs durably; returns once they are on disk."""
        if not rejected:
            return
        now = time.time()
        lines = "".join(
            json.dumps({"at": now, "reason": reason, "event": event_json(event)}) + "\n"
            for event, reason in rejected
        )
        with self._lock:
            if self.path.exists() and self.path.stat().st_size + len(lines) > self.max_bytes:
                os.replace(self.path, self.older)  # the older file's events go
                self.count, self._current = self._current, 0
            with open(self.path, "a", encoding="ascii") as fh:
                fh.write(lines)
                fh.flush()
                os.fsync(fh.fileno())
            self.count += len(rejected)
            self._current += len(rejected)
            self.last_reason = short_reason(rejected[-1][1])
        for event, reason in rejected[:10]:
            log.warning(
                "status event %r (instance %s, computer %s) set aside in %s: %s",
                event.id,
                event.instance_id,
                event.computer_id,
                self.path,
                reason,
            )

    def read(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` entries, newest last (tests, support)."""
        entries: list[dict[str, Any]] = []
        for path in (self.older, self.path):
            if path.exists():
                entries += [json.loads(line) for line in path.read_text("ascii").splitlines()]
        return entries[-limit:]


def short_reason(reason: str) -> str:
    """A reason as the heartbeat carries it: storable text, bounded."""
    return printable(reason)[:MAX_REASON]


def _tally(path: Path) -> tuple[int, str | None]:
    """Lines in a dead-letter file and the last one's reason."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0, None
    lines = data.splitlines()
    reason = None
    if lines:
        try:
            reason = short_reason(str(json.loads(lines[-1])["reason"]))
        except (ValueError, KeyError, TypeError):
            reason = None
    return len(lines), reason
