"""TCP ports for the processes tests start: never one that another test process has.

``taskfleet.cli.launcher.free_port`` asks the kernel for a free port and closes it; the
process given it binds it a second or so later. In between the kernel may hand the same
port to another test process (pytest-xdist workers, someone else's run on the machine)
or use it as the local end of an outgoing connection, and the server then fails to start.

Here ports come from below Linux's ephemeral range (32768 and up by default), which the
kernel never picks by itself, and each one is claimed with a lock on its own byte of one
shared lock file. The lock is the process's until it exits (the kernel drops it then,
however the process ends), so no two test processes using this module share a port, and
a restarted server gets its old port back without anyone having taken it meanwhile.
"""

from __future__ import annotations

import fcntl
import os
import random
import socket
import tempfile
from pathlib import Path

LOW, HIGH = 20_000, 32_000  # below the ephemeral range; see /proc/sys/net/ipv4/ip_local_port_range
LOCK_FILE = Path(tempfile.gettempdir()) / "taskfleet-test-ports.lock"

_lock_fd: int | None = None  # one open descriptor: closing any other would drop its locks
_claimed: set[int] = set()  # the process owns these (a second lock on its own byte succeeds)
_next = random.randrange(LOW, HIGH)  # workers start apart, so they rarely meet


def _bindable(port: int) -> bool:
    # As the servers bind (uvicorn sets SO_REUSEADDR): only a listener in the way counts.
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on and no other test process will be given."""
    global _lock_fd, _next
    if _lock_fd is None:
        _lock_fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    for _ in range(HIGH - LOW):
        port, _next = _next, LOW + (_next + 1 - LOW) % (HIGH - LOW)
        if port in _claimed:
            continue
        try:
            fcntl.lockf(_lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, port)
        except OSError:  # another test process has it
            continue
        if _bindable(port):
            _claimed.add(port)
            return port
        fcntl.lockf(_lock_fd, fcntl.LOCK_UN, 1, port)
    raise RuntimeError(f"no free port left in {LOW}-{HIGH}")
