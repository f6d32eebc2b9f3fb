"""Files for copy-file tasks: uploaded to the NS, stored in the database, addressed by SHA-256.

Why the database and not the NS's data directory: several NS replicas share one
PostgreSQL behind a load balancer (SPEC section 6), and a file uploaded through
one replica must be served by all of them; a data directory is one replica's.
The content is kept in ``FileChunk`` rows of ``CHUNK_BYTES``, so the NS reads
and writes a file a chunk at a time and never holds a whole one in memory.

An upload is first spooled to a temporary file in the NS's data directory while
its SHA-256 is computed and its size bounded (``MAX_FILE_BYTES``); only then are
its chunks written, in one short transaction, so a slow upload never holds the
database's write lock (SQLite has one writer).

Who may read a file (``may_fetch``): a task server for which some computer
assigned to it has an open instance of a run of a copy-file task naming that
file, and an agent (of the NS's own fallback role) that has such an instance.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from sqlalchemy import Select, delete, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge
from taskfleet.ns import audit, job_plans
from taskfleet.protocol.messages import InstanceState, TaskType
from taskfleet.storage.models import Computer, FileChunk, Instance, Run, StoredFile, Task, is_id

CHUNK_BYTES = 1024 * 1024
MAX_FILE_BYTES = 256 * 1024 * 1024
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
OPEN_STATES = (InstanceState.PENDING, InstanceState.RECEIVED, InstanceState.RUNNING)
Sessions = Callable[[], AbstractAsyncContextManager[AsyncSession]]


@dataclass
class FileInfo:
    id: int
    name: str
    sha256: str
    size: int
    created_at: float
    created_by: str


def info(row: StoredFile) -> FileInfo:
    return FileInfo(row.id, row.name, row.sha256, row.size, row.created_at, row.created_by)


def check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 255 or "\x00" in name or "/" in name:
        raise InvalidInput(
            "a file name must be 1 to 255 characters, without '/' or NUL", field="name"
        )
    return name


def check_sha256(text: str) -> str:
    if not SHA256_PATTERN.match(text):
        raise InvalidInput("a SHA-256 is 64 lower-case hexadecimal digits", field="sha256")
    return text


@dataclass
class Spooled:
    """An upload on disk, hashed and measured; ``discard`` removes it."""

    path: Path
    sha256: str
    size: int

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


async def spool(
    body: AsyncIterator[bytes], directory: Path, limit: int = MAX_FILE_BYTES
) -> Spooled:
    """Write an upload's bytes to a temporary file, hashing them; PayloadTooLarge past
    ``limit`` (the partial file removed)."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=directory, prefix="upload-")
    path = Path(name)
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            async for piece in body:
                size += len(piece)
                if size > limit:
                    raise PayloadTooLarge(
                        f"the file is larger than the limit of {limit} bytes "
                        f"({limit // (1024 * 1024)} MiB)"
                    )
                digest.update(piece)
                fh.write(piece)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Spooled(path, digest.hexdigest(), size)


def select_name(name: str) -> Select[Any]:
    return select(StoredFile.id).where(StoredFile.name == name)


def name_taken(name: str) -> NoReturn:
    raise Conflict(
        f"a file named {name!r} exists already; remove it first or choose another --name",
        field="name",
    )


async def store(session: AsyncSession, name: str, upload: Spooled, actor: str) -> StoredFile:
    """Store a spooled upload under ``name`` (unique), chunk by chunk."""
    name = check_name(name)
    if await session.scalar(select_name(name)) is not None:
        name_taken(name)
    row = StoredFile(
        name=name,
        sha256=upload.sha256,
        size=upload.size,
        created_at=time.time(),
        created_by=actor,
    )
    session.add(row)
    await session.flush()
    with upload.path.open("rb") as fh:
        seq = 0
        while piece := fh.read(CHUNK_BYTES):
            await session.execute(insert(FileChunk).values(file_id=row.id, seq=seq, data=piece))
            seq += 1
    audit.record(session, actor, "file.upload", name, sha256=upload.sha256, size=upload.size)
    return row


async def find(session: AsyncSession, key: str) -> StoredFile:
    """A file by name, or by id."""
    query = select(StoredFile).where(StoredFile.name == key)
    row = await session.scalar(query)
    if row is None and is_id(key):
        row = await session.get(StoredFile, int(key))
    if row is None:
        raise NotFound(f"no file {key!r}; 'taskfleet file list' shows them")
    return row


async def by_sha256(session: AsyncSession, sha256: str) -> StoredFile:
    row = await session.scalar(
        select(StoredFile).where(StoredFile.sha256 == sha256).order_by(StoredFile.id).limit(1)
    )
    if row is None:
        raise NotFound(f"no file with SHA-256 {sha256} is stored on the notification server")
    return row


async def listing(session: AsyncSession) -> list[StoredFile]:
    return list((await session.scalars(select(StoredFile).order_by(StoredFile.name))).all())


async def tasks_using(session: AsyncSession, name: str | None, sha256: str | None) -> list[Task]:
    """Copy-file tasks that name this file (by name or SHA-256)."""
    rows = await session.scalars(select(Task).where(Task.type == TaskType.COPY_FILE))
    return [
        t
        for t in rows.all()
        if (name is not None and t.params.get("file") == name)
        or (sha256 is not None and t.params.get("sha256") == sha256)
    ]


async def uses(session: AsyncSession) -> dict[str, list[str]]:
    """File name -> the copy-file tasks that name it."""
    out: dict[str, list[str]] = {}
    for task in (await session.scalars(select(Task).where(Task.type == TaskType.COPY_FILE))).all():
        out.setdefault(str(task.params.get("file", "")), []).append(task.name)
    return out


async def remove(session: AsyncSession, key: str, actor: str) -> None:
    row = await find(session, key)
    users = await tasks_using(session, row.name, None)
    if users:
        names = ", ".join(repr(t.name) for t in users[:5])
        raise Conflict(
            f"file {row.name!r} is copied by task(s) {names}; delete or change those first"
        )
    await session.execute(delete(FileChunk).where(FileChunk.file_id == row.id))
    await session.delete(row)
    audit.record(session, actor, "file.remove", row.name, sha256=row.sha256)


async def may_fetch(
    session: AsyncSession,
    sha256: str,
    *,
    task_server_id: int | None = None,
    computer_id: int | None = None,
) -> bool:
    """Whether an open instance of a run copying this file is held for this computer, or
    for a computer assigned to this task server."""
    task_ids = {t.id for t in await tasks_using(session, None, sha256)}
    if not task_ids:
        return False
    # Runs of those tasks, and runs of jobs (a job's plan names the tasks it runs).
    query = (
        select(Run.id, Run.task_id)
        .join(Instance, Instance.run_id == Run.id)
        .where(
            or_(Run.task_id.in_(task_ids), Run.job_id.is_not(None)),
            Instance.state.in_([s.value for s in OPEN_STATES]),
        )
        .distinct()
    )
    if computer_id is not None:
        query = query.where(Instance.computer_id == computer_id)
    if task_server_id is not None:
        query = query.join(Computer, Computer.id == Instance.computer_id).where(
            Computer.task_server_id == task_server_id
        )
    found = (await session.execute(query)).all()
    if any(row.task_id in task_ids for row in found):
        return True
    job_runs = [row.id for row in found if row.task_id is None]
    if not job_runs:
        return False
    plans = await session.scalars(select(Run.plan).where(Run.id.in_(job_runs)))
    return any(plan and job_plans.task_ids(plan) & task_ids for plan in plans.all())


async def content(sessions: Sessions, file_id: int) -> AsyncIterator[bytes]:
    """A stored file's bytes, a chunk at a time, each read in a short transaction of its
    own (a slow reader holds no transaction open)."""
    seq = 0
    while True:
        async with sessions() as session:
            piece = await session.scalar(
                select(FileChunk.data).where(FileChunk.file_id == file_id, FileChunk.seq == seq)
            )
        if piece is None:
            return
        yield piece
        seq += 1
