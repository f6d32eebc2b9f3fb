"""A script's processes, found and killed whole: for cancel and after an agent crash.

A script runs in a session of its own (``start_new_session``), so its process id
is also its process group and session id, and its children inherit both. What
belongs to it: every process of that session or group, and every descendant of
those (a child that started a session of its own is still a descendant while its
parent lives).

Against process id reuse, a ``Process`` record holds the script's start time
(``/proc/PID/stat`` field 22, clock ticks since boot) and the boot id: after a
reboot nothing is killed, and a process started before the script cannot be one
of its own. The number of a live session or group is never handed to a new
process, so members found by it are the script's.

Linux reads ``/proc``. Elsewhere (macOS, BSD) only the process group is killed, and
only while the agent that started it watches it (``killpg`` on its own child); an
agent restarted there cannot tell its old script from a process that reused the
number, and leaves it (docs/work-model.md, "Agent restarts").
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PROC = Path("/proc")


@dataclass
class Process:
    pid: int
    start: int  # clock ticks after boot; 0 where /proc is missing
    boot: str  # the kernel's boot id; "" where /proc is missing

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Process | None:
        try:
            return cls(int(data["pid"]), int(data["start"]), str(data["boot"]))
        except (KeyError, TypeError, ValueError):
            return None


@dataclass
class Stat:
    ppid: int
    pgid: int
    sid: int
    start: int


def stat(pid: int) -> Stat | None:
    """Fields of ``/proc/PID/stat``; None when the process is gone (or no /proc)."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name, in parentheses, may hold spaces and parentheses itself.
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return Stat(int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19]))
    except (IndexError, ValueError):
        return None


def boot_id() -> str:
    try:
        return (PROC / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def identify(pid: int) -> Process:
    """The record to keep of a script just started."""
    found = stat(pid)
    return Process(pid, found.start if found else 0, boot_id())


def _all() -> dict[int, Stat]:
    found = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir(PROC):
            if entry.name.isdigit() and (s := stat(int(entry.name))) is not None:
                found[int(entry.name)] = s
    return found


def members(process: Process) -> list[int]:
    """The live processes that belong to the script ``process`` started."""
    if not process.boot or process.boot != boot_id():
        return []  # another boot (or no /proc): nothing of it can be alive
    table = _all()
    own = {
        pid
        for pid, s in table.items()
        if (s.sid == process.pid or s.pgid == process.pid) and s.start >= process.start
    }
    leader = table.get(process.pid)
    if leader is not None and leader.start == process.start:
        own.add(process.pid)
    # Descendants too: a child may have started a session of its own.
    added = True
    while added:
        added = False
        for pid, s in table.items():
            if pid not in own and s.ppid in own and s.start >= process.start:
                own.add(pid)
                added = True
    own.discard(os.getpid())
    return sorted(own)


def kill(process: Process, own_child: bool = False) -> int:
    """SIGKILL every process of the script, twice over (one may fork meanwhile);
    how many were found. ``own_child``: this agent started it and watches it, so
    without /proc its process group is killed instead."""
    killed: set[int] = set()
    for _ in range(2):
        found = members(process)
        for pid in found:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        killed.update(found)
        if own_child and not process.boot:  # no /proc: its group, while ours to kill
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)
    return len(killed)
