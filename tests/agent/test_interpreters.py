"""How each interpreter is given its script: command line, file suffix, encoding.

cmd and Windows PowerShell are code paths CI (Linux) cannot run: their command lines
and file contents are checked here."""

from __future__ import annotations

import codecs
import sys

from taskfleet.agent import interpreters
from taskfleet.protocol.messages import INTERPRETERS


def test_every_interpreter_the_ns_accepts_is_known_to_the_agent() -> None:
    assert set(INTERPRETERS) == set(interpreters.TABLE)


def test_cmd_runs_a_crlf_utf8_batch_file_without_autorun() -> None:
    path = r"C:\Windows\Temp\taskfleet-x.cmd"
    assert interpreters.command_for("cmd", r"C:\Windows\system32\cmd.exe", path) == [
        r"C:\Windows\system32\cmd.exe",
        "/d",
        "/c",
        path,
    ]
    assert interpreters.suffix("cmd") == ".cmd"
    data = interpreters.script_bytes("cmd", "echo héllo\nexit /b 3\r\n")
    assert data == "@chcp 65001 >nul\r\necho héllo\r\nexit /b 3\r\n".encode()
    assert b"\r\r" not in data


def test_windows_powershell_gets_a_bom_and_bypasses_the_execution_policy() -> None:
    command = interpreters.command_for("powershell", "powershell.exe", r"C:\t\a.ps1")
    assert command == [
        "powershell.exe",
        "-NoProfile",
        "-NonInteractive",
        "-ExecutionPolicy",
        "Bypass",
        "-File",
        r"C:\t\a.ps1",
    ]
    assert interpreters.suffix("powershell") == ".ps1"
    data = interpreters.script_bytes("powershell", "Write-Output 'ü'\nexit 3")
    assert data.startswith(codecs.BOM_UTF8)
    assert data[3:].decode() == "Write-Output 'ü'\r\nexit 3"


def test_pwsh_and_posix_shells_get_the_script_as_written() -> None:
    assert interpreters.command_for("pwsh", "/usr/bin/pwsh", "/tmp/a.ps1") == [
        "/usr/bin/pwsh",
        "-NoProfile",
        "-NonInteractive",
        "-File",
        "/tmp/a.ps1",
    ]
    assert interpreters.command_for("sh", "/bin/sh", "/tmp/a.sh") == ["/bin/sh", "/tmp/a.sh"]
    assert interpreters.script_bytes("bash", "echo é\n") == "echo é\n".encode()
    assert interpreters.find("python") == sys.executable


def test_a_missing_interpreter_is_not_found() -> None:
    assert interpreters.find("no-such-interpreter") is None
    if sys.platform != "win32":
        assert interpreters.find("cmd") is None
