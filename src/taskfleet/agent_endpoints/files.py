"""The endpoint agents fetch copy-file tasks' files from, on a task server and on the NS.

GET /agent/files/{sha256}   the file's bytes, streamed, with its SHA-256 in
                            ``X-Taskfleet-SHA256``; only to an agent that was handed
                            work copying that file (403 otherwise). The agent checks
                            the SHA-256 itself before it writes anything.

Each app puts a ``FileSource`` in ``app.state.file_source``: a task server its
``taskserver.file_cache.FileCache``, the NS (serving agents itself, R3) ``ns.file_role``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from taskfleet.agent_endpoints.api import authenticated
from taskfleet.errors import InvalidInput

SHA256_HEADER = "X-Taskfleet-SHA256"
_HEX = frozenset("0123456789abcdef")


@dataclass
class Opened:
    """A verified file, ready to be streamed once."""

    sha256: str
    size: int
    chunks: AsyncIterator[bytes]


class FileSource(Protocol):
    async def open(self, computer_id: int, sha256: str) -> Opened:
        """The verified file for this agent, or Forbidden / NotFound / Unavailable."""


async def get_file(request: Request) -> Response:
    sha256 = request.path_params["sha256"]
    if len(sha256) != 64 or not set(sha256) <= _HEX:
        raise InvalidInput("a file is named by its SHA-256: 64 lower-case hexadecimal digits")
    computer_id, _ = await authenticated(request)
    source: FileSource = request.app.state.file_source
    opened = await source.open(computer_id, sha256)
    return StreamingResponse(
        opened.chunks,
        media_type="application/octet-stream",
        headers={"Content-Length": str(opened.size), SHA256_HEADER: opened.sha256},
    )


router = APIRouter(tags=["agent"])
# A plain route like the other agent endpoints (agent_endpoints.api): documented here.
router.add_route("/agent/files/{sha256}", get_file, methods=["GET"], include_in_schema=False)
