"""Files of copy-file tasks, fetched once from the NS and served to this task server's agents.

State, in ``<data-dir>/files``:

- ``<sha256>``: a file fetched from the NS whose SHA-256 was verified before it was
  renamed there. It is verified again before it is served: a cache entry whose
  content no longer matches its name (a disk fault, a hand edit) is dropped and
  fetched again, and a file whose fresh copy does not match either is refused, so
  a task server never serves a byte of a file it has not verified. Hashing a large
  file for every agent would cost more than serving it, so a verification is
  remembered with the file's identity on disk (inode, size, modification and
  change times, which every write changes), and repeated only when one changed.
- ``tmp/``: downloads in progress, removed when they fail.

Grants (memory only): which computers this task server handed a copy-file work
item naming which file, until that item's timeout (plus a grace period) has
passed. Only those agents are served that file: an agent of this task server may
not read files meant for others. An agent without a grant here (the task server
restarted since it handed the work out, or the agent failed over to it) is served
when the NS confirms it holds open work copying that file (``Confirm``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import IO

from taskfleet.agent_endpoints.files import Opened
from taskfleet.errors import Forbidden, Unavailable
from taskfleet.protocol.jobs import JOB_TASK_TYPE, task_steps
from taskfleet.protocol.messages import TaskType, WorkItem

log = logging.getLogger("taskfleet.taskserver")
CHUNK_BYTES = 1024 * 1024
GRANT_GRACE_S = 3600.0
# Streams the NS's copy of a file (by SHA-256) into an open binary file.
Fetch = Callable[[str, IO[bytes]], Awaitable[None]]
# Asks the NS whether a computer may fetch a file (by SHA-256): True, or False when not.
Confirm = Callable[[int, str], Awaitable[bool]]


def sha256_of(fh: IO[bytes]) -> str:
    fh.seek(0)
    digest = hashlib.sha256()
    while piece := fh.read(CHUNK_BYTES):
        digest.update(piece)
    fh.seek(0)
    return digest.hexdigest()


def _identity(fd: int) -> tuple[int, int, int, int]:
    st = os.fstat(fd)
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class FileCache:
    def __init__(self, directory: Path, fetch: Fetch, confirm: Confirm | None = None) -> None:
        self.directory = directory
        self.tmp = directory / "tmp"
        self._fetch = fetch
        self._confirm = confirm
        self._locks: dict[str, asyncio.Lock] = {}
        self._verified: dict[str, tuple[int, int, int, int]] = {}
        self._grants: dict[int, dict[str, float]] = {}
        self.dropped = 0  # corrupted cache entries found and dropped (tests, metrics)
        self.fetched = 0  # files fetched from the NS

    # --- grants ------------------------------------------------------------------

    def grant(self, computer_id: int, items: Iterable[WorkItem]) -> None:
        """Work handed to this computer: it may fetch the files it copies."""
        now = time.monotonic()
        for item in items:
            for sha in copied_files(item):
                until = now + item.timeout_s + GRANT_GRACE_S
                self._grants.setdefault(computer_id, {})[sha] = until

    def granted(self, computer_id: int, sha256: str) -> bool:
        now = time.monotonic()
        held = self._grants.get(computer_id, {})
        for sha in [s for s, until in held.items() if until < now]:
            del held[sha]
        if not held:
            self._grants.pop(computer_id, None)
        return held.get(sha256, 0.0) >= now

    async def _confirmed(self, computer_id: int, sha256: str) -> bool:
        """The NS says this computer has open work copying the file: granted for a while."""
        if self._confirm is None or not await self._confirm(computer_id, sha256):
            return False
        until = time.monotonic() + GRANT_GRACE_S
        self._grants.setdefault(computer_id, {})[sha256] = until
        return True

    # --- serving -------------------------------------------------------------------

    async def open(self, computer_id: int, sha256: str) -> Opened:
        """The verified file for this agent; Forbidden when it was handed no work copying
        it, Unavailable when no verified copy can be had."""
        if not self.granted(computer_id, sha256) and not await self._confirmed(computer_id, sha256):
            raise Forbidden(
                f"computer {computer_id} has no copy-file work for file {sha256} from this "
                "task server"
            )
        lock = self._locks.setdefault(sha256, asyncio.Lock())
        async with lock:
            fh = await self._open_verified(sha256)
        return Opened(sha256, os.fstat(fh.fileno()).st_size, _stream(fh))

    async def _open_verified(self, sha256: str) -> IO[bytes]:
        path = self.directory / sha256
        try:
            fh = path.open("rb")
        except FileNotFoundError:
            pass
        else:
            if await self._verify(fh, sha256):
                return fh
            fh.close()
            self.dropped += 1
            log.warning("cached file %s does not match its SHA-256: dropped, fetching again", path)
            path.unlink(missing_ok=True)
        await self._download(sha256, path)
        fh = path.open("rb")
        if await self._verify(fh, sha256):
            return fh
        fh.close()
        path.unlink(missing_ok=True)
        raise Unavailable(f"file {sha256} changed on this task server's disk; try again")

    async def _verify(self, fh: IO[bytes], sha256: str) -> bool:
        identity = _identity(fh.fileno())
        if self._verified.get(sha256) == identity:
            return True
        self._verified.pop(sha256, None)
        if await asyncio.to_thread(sha256_of, fh) != sha256:
            return False
        self._verified[sha256] = identity
        return True

    async def _download(self, sha256: str, path: Path) -> None:
        """Fetch from the NS into a temporary file; renamed into the cache only once its
        SHA-256 matched."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix=f"{sha256[:16]}-")
        tmp = Path(name)
        try:
            with os.fdopen(fd, "w+b") as fh:
                await self._fetch(sha256, fh)
                fh.flush()
                got = await asyncio.to_thread(sha256_of, fh)
                if got != sha256:
                    raise Unavailable(
                        f"the notification server's copy of file {sha256} has SHA-256 {got}: "
                        "refused, not served"
                    )
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            self.fetched += 1
        finally:
            tmp.unlink(missing_ok=True)


async def _stream(fh: IO[bytes]) -> AsyncIterator[bytes]:
    try:
        while piece := await asyncio.to_thread(fh.read, CHUNK_BYTES):
            yield piece
    finally:
        fh.close()


def copied_files(item: WorkItem) -> list[str]:
    """The files (SHA-256) a work item copies: a copy-file task's, or those of a client
    job's copy-file steps."""
    if item.task_type == TaskType.COPY_FILE:
        params: list[object] = [item.params]
    elif item.task_type == JOB_TASK_TYPE:
        steps = task_steps(item.params)
        params = [s.get("params") for s in steps if s.get("task_type") == TaskType.COPY_FILE]
    else:
        return []
    return [p["sha256"] for p in params if isinstance(p, dict) and isinstance(p.get("sha256"), str)]
