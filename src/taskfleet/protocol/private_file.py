"""Files only this user may read (mode 0600), written whole or not at all.

Keys, credentials, identities, enrolment tokens and a paused job's work item (which may
hold secret parameter values) are kept this way by every component. Atomic, because a
crash or power cut mid-write must leave the previous file, never half of the new one: a
node whose identity file is cut short enrols again as a new computer. Under
``protocol/`` so the agent, which imports only the protocol and its own modules, shares
it with the servers and the CLI.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_private(path: Path, data: bytes | str) -> Path:
    """Replace ``path`` with ``data`` (text is UTF-8), mode 0600, durably; ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Beside the target, so os.replace stays on one file system (an atomic rename); the
    # mode is given at creation, so the secret is never readable by others, not even
    # between open and chmod.
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def write_private_json(path: Path, data: Any) -> Path:
    """``write_private`` of ``data`` as JSON."""
    return write_private(path, json.dumps(data))
