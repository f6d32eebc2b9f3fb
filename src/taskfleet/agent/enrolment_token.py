"""Where a service finds its enrolment token: a file or the environment, not the argv.

The command line of every process is readable by every local user (``ps``,
``/proc/PID/cmdline``), so a token given there is given to all of them. Agents and
task servers read it from ``--token-file PATH`` (keep it mode 0600) or from the
``TASKFLEET_TOKEN`` environment variable. ``--token`` still works, with a warning.
The variable is taken out of the process's environment once read: the scripts an
agent runs inherit its environment, and must not inherit the token.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from taskfleet.errors import InvalidInput

ENV = "TASKFLEET_TOKEN"
FILE_HELP = "file holding the enrolment token (first start only; keep it mode 0600)"
ARGV_HELP = (
    "enrolment token on the command line: visible to every local user in the process "
    "list; prefer --token-file or TASKFLEET_TOKEN"
)
ARGV_WARNING = (
    "warning: --token puts the enrolment token in the process list, where every local user "
    "can read it; use --token-file PATH or the TASKFLEET_TOKEN environment variable"
)


def read(token_file: Path | None, argv_token: str | None) -> str:
    """The token to enrol with ('' when there is none: an enrolled node needs none)."""
    from_env = os.environ.pop(ENV, "")
    if token_file is not None and argv_token:
        raise InvalidInput("give --token-file or --token, not both")
    if token_file is not None:
        try:
            mode = token_file.stat().st_mode
            token = token_file.read_text().strip()
        except OSError as exc:
            raise InvalidInput(
                f"--token-file {token_file}: cannot read it ({exc.strerror})"
            ) from None
        if not token:
            raise InvalidInput(f"--token-file {token_file} is empty")
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            print(
                f"warning: {token_file} is readable by other users; chmod 600 it",
                file=sys.stderr,
            )
        return token
    if argv_token:
        print(ARGV_WARNING, file=sys.stderr)
        return argv_token
    return from_env
