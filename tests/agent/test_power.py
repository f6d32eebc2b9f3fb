"""Power control's command lines per platform, and its test mode (nothing is ever run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taskfleet.agent import power
from taskfleet.agent.outcome import Outcome
from taskfleet.protocol.messages import InstanceState


def argvs(action: str, delay: int, message: str, platform: str) -> list[list[str]]:
    return [s.argv for s in power.commands(action, delay, message, platform)]


def test_windows_command_lines() -> None:
    assert argvs("restart", 300, "Patch night", "win32") == [
        ["shutdown", "/r", "/t", "300", "/c", "Patch night"]
    ]
    assert argvs("shutdown", 0, "", "win32") == [["shutdown", "/s", "/t", "0"]]
    assert argvs("logoff", 0, "Bye", "win32") == [["msg", "*", "Bye"], ["logoff", "console"]]
    steps = power.commands("logoff", 60, "", "win32")
    # a delayed log off is left to a detached cmd; the agent does not wait a minute
    assert [s.argv for s in steps] == [
        ["cmd", "/c", "timeout /t 60 /nobreak >NUL & logoff console"]
    ]
    assert steps[0].wait is False


def test_linux_and_macos_command_lines() -> None:
    # the delay is in whole minutes there: rounded up
    assert argvs("restart", 61, "msg", "linux") == [["shutdown", "-r", "+2", "msg"]]
    assert argvs("restart", 0, "", "linux") == [["shutdown", "-r", "now"]]
    assert argvs("shutdown", 120, "", "linux") == [["shutdown", "-P", "+2"]]
    assert argvs("shutdown", 120, "", "darwin") == [["shutdown", "-h", "+2"]]
    assert argvs("logoff", 30, "Bye", "linux") == [
        ["wall", "Bye"],
        ["systemd-run", "--on-active=30s", "loginctl", "terminate-seat", "seat0"],
    ]
    with pytest.raises(ValueError, match="not supported on macOS"):
        power.commands("logoff", 30, "", "darwin")
    with pytest.raises(ValueError, match="unknown power action"):
        power.commands("hibernate", 0, "", "linux")


async def test_test_mode_records_and_runs_nothing(tmp_path: Path) -> None:
    record = tmp_path / "power.jsonl"
    reported: list[Outcome] = []

    async def report_first(o: Outcome) -> None:
        reported.append(o)

    # (no delay: a real run would report first; in test mode nothing runs at all)
    params = {"action": "restart", "delay_s": 0, "message": "now"}
    result = await power.run(params, record, report_first)
    assert result is not None and result.state == InstanceState.SUCCEEDED
    assert reported == []
    (line,) = [json.loads(x) for x in record.read_text().splitlines()]
    assert line["action"] == "restart" and line["commands"][0][:2] in (
        ["shutdown", "-r"],
        ["shutdown", "/r"],
    )


def test_the_test_file_comes_from_the_option_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(power.TEST_FILE_ENV, raising=False)
    assert power.recording_file(None) is None
    monkeypatch.setenv(power.TEST_FILE_ENV, str(tmp_path / "p"))
    assert power.recording_file(None) == tmp_path / "p"
    assert power.recording_file(tmp_path / "q") == tmp_path / "q"
