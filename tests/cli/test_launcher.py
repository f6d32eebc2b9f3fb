"""The launcher the demo and the tests start processes with."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskfleet.cli.launcher import Launcher, wait_http


def test_waiting_for_a_process_that_exited_fails_at_once_with_its_output(tmp_path: Path) -> None:
    # Given a process that exits at once (an unknown command) and will never answer HTTP
    launcher = Launcher(tmp_path / "logs")
    proc = launcher.start("nothing", "no-such-command")
    try:
        # When we wait for it to answer
        # Then the wait ends because it exited (not a TimeoutError a minute later), showing why
        with pytest.raises(RuntimeError, match="nothing exited") as exited:
            wait_http("http://127.0.0.1:9/hello", proc, timeout=60)
        assert "no-such-command" in str(exited.value)
    finally:
        launcher.stop_all()
