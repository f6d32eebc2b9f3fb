"""Run one script: its own process group, a timeout, and capped output.

Output is made printable as it is read (``protocol.fields.printable_output``): a NUL
byte becomes U+2400 and bytes that are not UTF-8 become U+FFFD, so whatever a script
prints, its status can be stored and shown (R12). The exit status is kept in 32 bits
(``fit_return_code``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from taskfleet.agent import interpreters
from taskfleet.agent.accounts import Account
from taskfleet.protocol.fields import (
    DEFAULT_OUTPUT_LIMIT,
    TRUNCATION_MARKER,
    fit_return_code,
    printable_output,
)


@dataclass
class Outcome:
    return_code: int | None
    output: str
    timed_out: bool = False
    error: str = ""


async def run_script(
    interpreter: str,
    script: str,
    timeout_s: float,
    env: dict[str, str] | None = None,
    output_limit: int = DEFAULT_OUTPUT_LIMIT,
    cwd: str | None = None,
    account: Account | None = None,
    started: Callable[[int], None] | None = None,
) -> Outcome:
    """Run ``script``; its first ``output_limit`` bytes of output are kept (the rest is
    read and counted, so the script never blocks on a full pipe) and the marker says
    how many bytes were not kept."""
    exe = interpreters.find(interpreter)
    if exe is None:
        return Outcome(
            None, "", error=f"interpreter {interpreter!r} is not installed on this computer"
        )
    fd, path = tempfile.mkstemp(prefix="taskfleet-", suffix=interpreters.suffix(interpreter))
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(interpreters.script_bytes(interpreter, script))
        if account is not None:  # run-as: the file is 0600, the script's user must read it
            os.chown(path, account.uid, account.gid)
        proc = await asyncio.create_subprocess_exec(
            *interpreters.command_for(interpreter, exe, path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a timeout kills all of it
            env={**os.environ, **(account.environment() if account else {}), **(env or {})},
            cwd=cwd or None,
            **(account.subprocess_options() if account else {}),
        )
        if started is not None:  # the agent records it, to stop it (agent.interrupted)
            started(proc.pid)
        collected = bytearray()
        dropped = 0

        async def read() -> None:
            nonlocal dropped
            assert proc.stdout is not None
            while chunk := await proc.stdout.read(65536):
                room = max(0, output_limit - len(collected))
                collected.extend(chunk[:room])
                dropped += max(0, len(chunk) - room)

        reader = asyncio.create_task(read())
        timed_out = False
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader, 5)
        text = printable_output(bytes(collected))
        if dropped:
            text += TRUNCATION_MARKER.format(dropped=dropped)
        return Outcome(fit_return_code(proc.returncode), text, timed_out=timed_out)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
