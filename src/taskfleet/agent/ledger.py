"""What this agent has accepted, on disk, so that no instance runs twice (R8).

One small file per instance holding its last state. An instance found in the
ledger is never started again; one found ``Running`` after a restart was cut
off and is reported Failed instead of being rerun.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

KEEP_S = 30 * 24 * 3600.0


class Ledger:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def _path(self, instance_id: int) -> Path:
        return self.directory / str(int(instance_id))

    def state(self, instance_id: int) -> str | None:
        try:
            return self._path(instance_id).read_text().strip() or None
        except FileNotFoundError:
            return None

    def record(self, instance_id: int, state: str) -> None:
        path = self._path(instance_id)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            fh.write(state)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def unfinished(self) -> dict[int, str]:
        out = {}
        for path in self.directory.iterdir():
            if path.suffix or not path.name.isdigit():
                continue
            state = path.read_text().strip()
            if state in ("Received", "Running"):
                out[int(path.name)] = state
        return out

    def prune(self) -> None:
        """Forget finished instances older than a month; the NS stopped offering them long ago."""
        cutoff = time.time() - KEEP_S
        for path in self.directory.iterdir():
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
            except OSError:
                continue
