"""A copy-file task on this computer: fetch the file, verify it, write it in one step.

What a copy-file ``WorkItem`` carries (checked by the NS, ``ns.task_types``):
``file`` (its name on the NS), ``sha256``, ``size``, ``path`` (absolute), ``mode``
and ``owner`` (empty, or user[:group] when the agent runs as root).

The file is fetched from the agent's task server (or the NS when the NS serves
it), streamed into a temporary file beside the target, and its SHA-256 and size
checked against the task's; only a verified file is given its mode and owner,
flushed to disk and renamed over the target, so the target is either the old file
or the whole new one, never a corrupted or partial one. Any failure removes the
temporary file and says why.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from taskfleet.agent import outcome
from taskfleet.agent.outcome import Outcome
from taskfleet.errors import TaskfleetError
from taskfleet.protocol.calls import download
from taskfleet.protocol.messages import WorkItem


class _Sink:
    """Writes what arrives to a file, hashing and counting it; refuses more than ``limit``."""

    def __init__(self, fh: Any, limit: int) -> None:
        self.fh = fh
        self.limit = limit
        self.size = 0
        self.digest = hashlib.sha256()

    def write(self, piece: bytes) -> None:
        self.size += len(piece)
        if self.size > self.limit:
            raise TaskfleetError(f"the server sent more than the file's {self.limit} bytes")
        self.digest.update(piece)
        self.fh.write(piece)


def verify(sha256: str, size: int, got_sha256: str, got_size: int) -> str | None:
    """Why a fetched file may not be written, or None when it is the task's file."""
    if got_size != size:
        return f"the file fetched has {got_size} bytes, not {size}: not written"
    if got_sha256 != sha256:
        return f"the file fetched has SHA-256 {got_sha256}, not {sha256}: not written"
    return None


def _owner_ids(owner: str) -> tuple[int, int]:
    import grp
    import pwd

    user, _, group = owner.partition(":")
    entry = pwd.getpwnam(user)
    gid = grp.getgrnam(group).gr_gid if group else entry.pw_gid
    return entry.pw_uid, gid


async def run(item: WorkItem, client: httpx.AsyncClient | None) -> Outcome:
    params = item.params
    sha256, size = str(params.get("sha256", "")), int(params.get("size", -1))
    target = Path(str(params.get("path", "")))
    mode = int(params.get("mode", 0o644))
    owner = str(params.get("owner") or "")
    if client is None:
        return outcome.failed("no task server to fetch the file from")
    if owner and (sys.platform == "win32" or os.geteuid() != 0):
        return outcome.failed(f"owner {owner!r} needs an agent running as root; nothing written")
    try:
        uid_gid = _owner_ids(owner) if owner else None
    except KeyError:
        return outcome.failed(f"owner {owner!r}: no such user or group here; nothing written")
    if not target.parent.is_dir():
        return outcome.failed(f"directory {target.parent} does not exist; nothing written")
    try:
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tf")
    except OSError as exc:
        return outcome.failed(f"cannot write in {target.parent}: {exc.strerror}")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            sink = _Sink(fh, size)
            try:
                await download(client, f"/agent/files/{sha256}", sink.write, timeout=item.timeout_s)
            except TaskfleetError as exc:
                return outcome.failed(
                    f"fetching file {params.get('file')!r} failed: {exc.message}; nothing written"
                )
            why = verify(sha256, size, sink.digest.hexdigest(), sink.size)
            if why is not None:
                return outcome.failed(why)
            if hasattr(os, "fchmod"):  # POSIX; Windows below, by path
                os.fchmod(fh.fileno(), mode)
            if uid_gid is not None:
                os.fchown(fh.fileno(), *uid_gid)
            fh.flush()
            os.fsync(fh.fileno())
        if not hasattr(os, "fchmod"):
            os.chmod(tmp, mode)
        os.replace(tmp, target)
        _sync_directory(target.parent)
    except OSError as exc:
        return outcome.failed(f"writing {target} failed: {exc.strerror or exc}; not written")
    finally:
        tmp.unlink(missing_ok=True)
    return outcome.succeeded(
        f"wrote {target} ({size} bytes, SHA-256 {sha256}, mode {mode:04o}"
        + (f", owner {owner})" if owner else ")")
    )


def _sync_directory(directory: Path) -> None:
    """The rename made durable (POSIX); Windows has no directory handles to sync."""
    if sys.platform == "win32":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
