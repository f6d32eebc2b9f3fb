"""Scripts an agent was running when it died, found and stopped when it starts again.

Beside the ledger's state file of an instance (``agent.ledger``), ``ID.proc`` holds
the script's process as JSON (``process_tree.Process``: pid, start time, boot id),
written the moment the script starts and removed when it ends. An agent killed
with kill -9 leaves both behind; on the next start ``stop_leftovers`` kills what
is left of that process tree, and the agent reports the instance ``Failed`` with
the reason ``agent restarted during the run``. It is never run again: the ledger
says it was started.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

from taskfleet.agent import process_tree

log = logging.getLogger("taskfleet.agent")
REASON = "agent restarted during the run"
SUFFIX = ".proc"


def _path(directory: Path, instance_id: int) -> Path:
    return directory / f"{int(instance_id)}{SUFFIX}"


def remember(directory: Path, instance_id: int, process: process_tree.Process) -> None:
    """Record the running script of ``instance_id`` (durably: a crash may follow)."""
    path = _path(directory, instance_id)
    tmp = path.with_suffix(".proctmp")
    with open(tmp, "w") as fh:
        json.dump(process.to_json(), fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def forget(directory: Path, instance_id: int) -> None:
    with contextlib.suppress(OSError):
        _path(directory, instance_id).unlink()


def recorded(directory: Path, instance_id: int) -> process_tree.Process | None:
    try:
        return process_tree.Process.from_json(json.loads(_path(directory, instance_id).read_text()))
    except (OSError, ValueError):
        return None


def stop_leftovers(directory: Path, instance_id: int) -> str:
    """Kill what is left of the interrupted instance's script; what to report."""
    process = recorded(directory, instance_id)
    if process is None:
        return f"taskfleet: {REASON}; its script had not started, and is not run again"
    killed = process_tree.kill(process)
    forget(directory, instance_id)
    if killed:
        log.warning("instance %s: stopped %d leftover processes", instance_id, killed)
        return (
            f"taskfleet: {REASON}; what was left of its script ({killed} processes) was "
            "stopped, and it is not run again"
        )
    return f"taskfleet: {REASON}; its script had ended; it is not run again"
