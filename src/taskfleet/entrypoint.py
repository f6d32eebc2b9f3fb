"""The ``taskfleet`` command's first stop: route ``agent run`` without loading the admin CLI.

The agent runs on every managed computer, so its process must not import Typer,
Rich or the server libraries the admin commands use. Nothing is imported at the
top of this module for that reason.
"""

from __future__ import annotations

import sys


def main() -> None:
    argv = sys.argv[1:]
    if argv[:2] == ["agent", "run"]:
        from taskfleet.agent.cli import main as agent_main

        sys.exit(agent_main(argv[2:]))
    from taskfleet.cli.main import app

    app()
