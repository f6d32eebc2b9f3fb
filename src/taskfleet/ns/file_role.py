"""The NS serving copy-file tasks' files to the agents it serves itself (R3's last fallback).

The file comes from the database (``ns.files``), which is the authority: the agent
checks its SHA-256 before writing, as it does with a task server's copy.
"""

from __future__ import annotations

from taskfleet.agent_endpoints.files import Opened
from taskfleet.errors import Forbidden
from taskfleet.ns import files
from taskfleet.ns.state import NSState


class NSFiles:
    def __init__(self, state: NSState) -> None:
        self.state = state

    async def open(self, computer_id: int, sha256: str) -> Opened:
        async with self.state.session() as session:
            if not await files.may_fetch(session, sha256, computer_id=computer_id):
                raise Forbidden(
                    f"computer {computer_id} has no open copy-file work for file {sha256}"
                )
            row = await files.by_sha256(session, sha256)
            size, file_id = row.size, row.id
        return Opened(sha256, size, files.content(self.state.session, file_id))
