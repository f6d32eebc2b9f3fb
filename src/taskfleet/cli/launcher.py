"""Start and stop real taskfleet processes on this machine: used by ``demo`` and the tests.

Each process is started in its own session, its output goes to a log file,
and ``stop`` ends only the processes started here, by PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Proc:
    name: str
    args: list[str]
    log: Path
    popen: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""


@dataclass
class Launcher:
    workdir: Path
    procs: list[Proc] = field(default_factory=list)

    def start(
        self,
        name: str,
        *args: str,
        env: dict[str, str] | None = None,
        prefix: Sequence[str] = (),
    ) -> Proc:
        """Start ``taskfleet ARGS``; ``prefix`` wraps it (the benchmark uses ``taskset -c 0``)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.workdir / f"{name}.log"
        cmd = [*prefix, sys.executable, "-m", "taskfleet", *args]
        fh = open(log, "ab")
        popen = subprocess.Popen(
            cmd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        fh.close()
        proc = Proc(name, cmd, log, popen)
        self.procs.append(proc)
        return proc

    def kill(self, proc: Proc, sig: int = signal.SIGKILL) -> None:
        if proc.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(10)

    def stop(self, proc: Proc, timeout: float = 10.0) -> None:
        if proc.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill(proc)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(reversed(self.procs)):
            if proc.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in list(self.procs):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(max(0.1, deadline - time.monotonic()))
            self.kill(proc)
        self.procs.clear()


def wait_until(
    check: Callable[[], object], timeout: float, what: str, interval: float = 0.2
) -> object:
    """Poll ``check`` until it returns something truthy; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # the thing may not be up yet
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(
        f"timed out after {timeout:g}s waiting for {what} (last error: {last_error})"
    )


def wait_http(url: str, proc: Proc, timeout: float = 30.0) -> None:
    def up() -> bool:
        # An exited process ends the wait at once (wait_until would take an exception
        # raised here for "not up yet" and go on polling until the timeout).
        if not proc.alive():
            return True
        # Is it up? Not: whom does it trust (verify=False: the tests check TLS themselves).
        return httpx.get(url, timeout=2, verify=False).status_code < 500

    try:
        wait_until(up, timeout, f"{proc.name} at {url}")
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}\n--- {proc.name} log ---\n{proc.output()[-3000:]}") from None
    if not proc.alive():
        raise RuntimeError(f"{proc.name} exited:\n{proc.output()[-3000:]}")
