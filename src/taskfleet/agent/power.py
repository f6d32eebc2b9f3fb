"""A power-control task on this computer: restart, shut down or log off, with a delay and
a message, by the platform's own commands.

    Linux    restart   shutdown -r +MIN "msg"     (now when the delay is 0)
             shutdown  shutdown -P +MIN "msg"
             logoff    wall "msg"; loginctl terminate-seat seat0
                       (after the delay: systemd-run --on-active=Ns ...)
    macOS    restart   shutdown -r +MIN "msg";  shutdown: shutdown -h +MIN "msg"
             logoff    osascript ... log out (no delay)
    Windows  restart   shutdown /r /t S /c "msg"; shutdown: shutdown /s /t S /c "msg"
             logoff    msg * "msg"; logoff console (after the delay: a detached
                       cmd /c "timeout /t S /nobreak & logoff console")

Linux and macOS count the delay in whole minutes: it is rounded up.

Test mode (``--power-test-file PATH`` or TASKFLEET_POWER_TEST_FILE): the agent appends
what it would run to PATH, one JSON object a line, and runs nothing. The tests use
it; nothing in taskfleet's tests ever powers a machine off.

With no delay, a restart or shut-down would stop the agent before its status left:
the instance is reported Succeeded (and sent) first, then the command runs.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskfleet.agent import outcome
from taskfleet.agent.outcome import Outcome

TEST_FILE_ENV = "TASKFLEET_POWER_TEST_FILE"
COMMAND_TIMEOUT_S = 60.0
LOGOFF_APPLESCRIPT = 'tell application "System Events" to log out'


@dataclass
class Step:
    argv: list[str]
    wait: bool = True  # False: started detached, not waited for (a delayed log off)


def _minutes(delay_s: int) -> str:
    return "now" if delay_s == 0 else f"+{math.ceil(delay_s / 60)}"


def commands(action: str, delay_s: int, message: str, platform: str) -> list[Step]:
    """What runs on ``platform`` (``sys.platform``); ValueError when it cannot be done."""
    if platform == "win32":
        return _windows(action, delay_s, message)
    posix = {"restart": "-r", "shutdown": "-h" if platform == "darwin" else "-P"}
    if action in posix:
        return [
            Step(["shutdown", posix[action], _minutes(delay_s), *([message] if message else [])])
        ]
    if action != "logoff":
        raise ValueError(f"unknown power action {action!r}")
    if platform == "darwin":
        if delay_s:
            raise ValueError("log off with a delay is not supported on macOS")
        return [Step(["osascript", "-e", LOGOFF_APPLESCRIPT])]
    steps = [Step(["wall", message])] if message else []
    terminate = ["loginctl", "terminate-seat", "seat0"]
    if delay_s:
        terminate = ["systemd-run", f"--on-active={delay_s}s", *terminate]
    return [*steps, Step(terminate)]


def _windows(action: str, delay_s: int, message: str) -> list[Step]:
    if action in ("restart", "shutdown"):
        flag = "/r" if action == "restart" else "/s"
        return [Step(["shutdown", flag, "/t", str(delay_s), *(["/c", message] if message else [])])]
    if action != "logoff":
        raise ValueError(f"unknown power action {action!r}")
    steps = [Step(["msg", "*", message])] if message else []
    if delay_s:
        # (cmd's 'timeout' counts the seconds; the agent does not wait for it)
        later = f"timeout /t {delay_s} /nobreak >NUL & logoff console"
        return [*steps, Step(["cmd", "/c", later], wait=False)]
    return [*steps, Step(["logoff", "console"])]


def recording_file(option: Path | None) -> Path | None:
    if option is not None:
        return option
    env = os.environ.get(TEST_FILE_ENV, "")
    return Path(env) if env else None


def _describe(action: str, delay_s: int, message: str) -> str:
    what = {"restart": "restart", "shutdown": "shut-down", "logoff": "log off"}[action]
    when = "now" if delay_s == 0 else f"in {delay_s} s"
    return f"{what} {when}" + (f" with message {message!r}" if message else "")


def _record(path: Path, action: str, delay_s: int, message: str, steps: list[Step]) -> None:
    line = {
        "at": time.time(),
        "action": action,
        "delay_s": delay_s,
        "message": message,
        "platform": sys.platform,
        "commands": [s.argv for s in steps],
    }
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")


async def _execute(steps: list[Step]) -> Outcome | None:
    """Run the steps; None when all went well, else why not."""
    for step in steps:
        if shutil.which(step.argv[0]) is None:
            return outcome.failed(f"{step.argv[0]!r} is not on this computer's PATH")
    for step in steps:
        if not step.wait:
            subprocess.Popen(  # noqa: S603 (an argv list, no shell)
                step.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            continue
        proc = await asyncio.create_subprocess_exec(
            *step.argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), COMMAND_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            return outcome.failed(
                f"{' '.join(step.argv)} did not finish in {COMMAND_TIMEOUT_S:g} s"
            )
        if proc.returncode != 0:
            text = out.decode("utf-8", "replace").strip()[-2000:]
            return outcome.failed(f"{' '.join(step.argv)} failed: {text}", proc.returncode)
    return None


async def run(
    params: dict[str, Any],
    test_path: Path | None,
    report_first: Callable[[Outcome], Awaitable[None]] | None,
) -> Outcome | None:
    """Carry out the task; the outcome to report, or None when ``report_first`` reported
    it already (no delay: reported, then the command runs). Without ``report_first`` (a
    client job's step, whose job the agent resumes after the restart: agent.job_resume)
    the command runs first, and a failure is reported as for a delayed one."""
    action, message = str(params.get("action")), str(params.get("message") or "")
    delay_s = int(params.get("delay_s") or 0)
    try:
        steps = commands(action, delay_s, message, sys.platform)
    except ValueError as exc:
        return outcome.failed(str(exc))
    described = _describe(action, delay_s, message)
    if test_path is not None:
        try:
            _record(test_path, action, delay_s, message, steps)
        except OSError as exc:
            return outcome.failed(f"test mode: cannot write {test_path}: {exc.strerror}")
        return outcome.succeeded(f"test mode: recorded {described} in {test_path}")
    if delay_s == 0 and action != "logoff" and report_first is not None:
        missing = [s.argv[0] for s in steps if shutil.which(s.argv[0]) is None]
        if missing:
            return outcome.failed(f"{missing[0]!r} is not on this computer's PATH")
        await report_first(outcome.succeeded(f"{described}: {' '.join(steps[-1].argv)}"))
        await _execute(steps)
        return None
    failure = await _execute(steps)
    if failure is not None:
        return failure
    return outcome.succeeded(f"{described}: {' '.join(steps[-1].argv)}")
