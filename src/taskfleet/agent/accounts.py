"""Run-as: the local account a script runs under when its task names one.

Only an agent running as root can start a process as another user (POSIX ``setuid``):
an agent that is not root, or on Windows, refuses such a task at once with a message
that says why, rather than run it as itself. The process gets the account's user,
primary group and no supplementary groups of root's, and its HOME, USER and LOGNAME.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any


class RunAsError(Exception):
    """The task's run-as account cannot be used on this computer; the message says why."""


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: str

    def subprocess_options(self) -> dict[str, Any]:
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def environment(self) -> dict[str, str]:
        return {"HOME": self.home, "USER": self.name, "LOGNAME": self.name}


def resolve(name: str) -> Account:
    """The account ``name`` on this computer, usable by this agent, or RunAsError."""
    if sys.platform == "win32":
        raise RunAsError(
            f"run-as user {name!r}: running a script as another user is not supported "
            "on Windows agents"
        )
    if os.geteuid() != 0:
        raise RunAsError(
            f"run-as user {name!r}: this agent does not run as root, so it cannot run a "
            "script as another user"
        )
    import pwd

    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise RunAsError(f"run-as user {name!r} does not exist on this computer") from None
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)
