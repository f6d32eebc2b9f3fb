"""Inventory: the facts this computer reports, and sending them to the NS.

Facts (``Facts.facts``, text, what collection rules compare): host name, OS name,
release, version and distribution, CPU count, memory, machine, Python version, and
the admin's custom facts from a JSON file (``--facts-file``, default
``<state-dir>/facts.json``: ``{"role": "web"}``); the built-in ones win a clash.
They change rarely, so they travel with every enrolment and assignment too.

Measurements (``InventoryReport``): uptime, disk free (the system drive), memory
available. They change all the time, so they travel only in an inventory report.

An inventory report is sent once the agent is enrolled (when this state directory
has never sent one), every ``inventory_interval_s`` of its agent configuration
since the last one (remembered in ``<state-dir>/inventory.json``, so restarts do
not resend it), and when an Inventory task runs.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import platform
import random
import shutil
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from taskfleet.agent import outcome
from taskfleet.agent.outcome import Outcome
from taskfleet.errors import TaskfleetError
from taskfleet.protocol import facts as local_facts
from taskfleet.protocol.calls import call
from taskfleet.protocol.messages import MAX_FACTS, Facts, InventoryReport, to_json
from taskfleet.protocol.transport import Credential

log = logging.getLogger("taskfleet.agent")
FACTS_FILE = "facts.json"
SENT_FILE = "inventory.json"
MAX_CUSTOM = MAX_FACTS - 32  # room for the built-in facts
RETRY_S = 60.0


def _meminfo(key: str) -> int | None:
    """A /proc/meminfo value in bytes (Linux)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class _MemoryStatus(ctypes.Structure):  # Windows' MEMORYSTATUSEX
    _fields_ = [
        ("dwLength", ctypes.c_ulong),
        ("dwMemoryLoad", ctypes.c_ulong),
        ("ullTotalPhys", ctypes.c_ulonglong),
        ("ullAvailPhys", ctypes.c_ulonglong),
        ("ullTotalPageFile", ctypes.c_ulonglong),
        ("ullAvailPageFile", ctypes.c_ulonglong),
        ("ullTotalVirtual", ctypes.c_ulonglong),
        ("ullAvailVirtual", ctypes.c_ulonglong),
        ("ullAvailExtendedVirtual", ctypes.c_ulonglong),
    ]


def _windows_memory() -> tuple[int, int] | None:
    status = _MemoryStatus()
    status.dwLength = ctypes.sizeof(_MemoryStatus)
    if not ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):  # type: ignore[attr-defined]
        return None
    return int(status.ullTotalPhys), int(status.ullAvailPhys)


def memory_bytes() -> int | None:
    if sys.platform == "win32":
        found = _windows_memory()
        return found[0] if found else None
    total = _meminfo("MemTotal")
    if total is None and hasattr(os, "sysconf"):
        try:
            total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            return None
    return total


def memory_available_bytes() -> int | None:
    if sys.platform == "win32":
        found = _windows_memory()
        return found[1] if found else None
    return _meminfo("MemAvailable")


def uptime_s() -> float | None:
    if sys.platform == "win32":
        return float(ctypes.windll.kernel32.GetTickCount64()) / 1000.0  # type: ignore[attr-defined]
    try:
        with open("/proc/uptime", encoding="ascii") as fh:
            return float(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def disk_free_bytes() -> int | None:
    root = os.environ.get("SystemDrive", "C:") + "\\" if sys.platform == "win32" else "/"
    try:
        return shutil.disk_usage(root).free
    except OSError:
        return None


def distribution() -> str:
    if sys.platform.startswith("linux"):
        try:
            return platform.freedesktop_os_release().get("PRETTY_NAME", "")
        except OSError:
            return ""
    if sys.platform == "win32":
        release, version, _, _ = platform.win32_ver()
        return f"Windows {release} {version}".strip()
    if sys.platform == "darwin":
        return f"macOS {platform.mac_ver()[0]}".strip()
    return ""


def builtin_facts() -> dict[str, str]:
    found = {
        "hostname": socket.gethostname(),
        "os_name": platform.system(),
        "os_release": platform.release(),
        "os_version": platform.version(),
        "os_distribution": distribution(),
        "cpu_count": str(os.cpu_count() or ""),
        "memory_bytes": str(memory_bytes() or ""),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
    return {key: value[:255] for key, value in found.items() if value}


def custom_facts(path: Path) -> dict[str, str]:
    """The admin's facts: a JSON object of text to text. A file that is not one is
    ignored, with a warning, rather than stopping the agent."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("custom facts in %s ignored: %s", path, exc)
        return {}
    if not isinstance(data, dict):
        log.warning("custom facts in %s ignored: not a JSON object", path)
        return {}
    good = {
        k: v
        for k, v in data.items()
        if isinstance(k, str)
        and isinstance(v, str)
        and 0 < len(k) <= 255
        and len(v) <= 255
        and "\x00" not in k + v
    }
    if len(good) != len(data) or len(good) > MAX_CUSTOM:
        log.warning(
            "custom facts in %s: only text values of up to 255 characters are kept, at most %d",
            path,
            MAX_CUSTOM,
        )
    return dict(list(good.items())[:MAX_CUSTOM])


def gather(
    name: str | None, hardware_id: str, addresses: list[str] | None, facts_file: Path
) -> Facts:
    """This computer's facts: ``protocol.facts`` plus the built-in and custom facts above."""
    facts = local_facts.gather(name, hardware_id, addresses)
    facts.facts = {**facts.facts, **custom_facts(facts_file), **builtin_facts()}
    return facts


def report(facts: Facts) -> InventoryReport:
    return InventoryReport(
        facts=facts,
        uptime_s=uptime_s(),
        disk_free_bytes=disk_free_bytes(),
        memory_available_bytes=memory_available_bytes(),
    )


class Schedule:
    """When the last report went, kept in the state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / SENT_FILE

    def last_sent(self) -> float | None:
        try:
            return float(json.loads(self.path.read_text())["sent_at"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def sent(self, at: float) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"sent_at": at}))
        os.replace(tmp, self.path)

    def due_in(self, interval_s: float, now: float) -> float:
        last = self.last_sent()
        return 0.0 if last is None else max(0.0, last + interval_s - now)


async def loop(
    schedule: Schedule, interval_s: Callable[[], float], send: Callable[[], Awaitable[object]]
) -> None:
    """Send a report when one is due; at once when none was ever sent (enrolment)."""
    while True:
        wait = schedule.due_in(interval_s(), time.time())
        if wait > 0:
            # Re-read the interval now and then: the agent configuration may change it.
            await asyncio.sleep(min(wait, 3600.0) * random.uniform(1.0, 1.1))
            continue
        try:
            await send()
        except Exception as exc:  # the NS away, a refusal: try again later
            log.warning("sending the inventory failed: %s", exc)
            await asyncio.sleep(RETRY_S * random.uniform(0.5, 1.5))


async def send(
    client: httpx.AsyncClient, credential: Credential, facts: Facts, schedule: Schedule
) -> InventoryReport:
    """Send a report to the NS now; TaskfleetError when it did not take it."""
    body = report(facts)
    await call(
        client, "POST", "/api/agent/inventory", json=to_json(body), headers=credential.header
    )
    schedule.sent(time.time())
    return body


async def run_task(send_now: Callable[[], Awaitable[InventoryReport]]) -> Outcome:
    """An Inventory task: send the report now, and say what was sent."""
    try:
        sent = await send_now()
    except TaskfleetError as exc:
        return outcome.failed(f"sending the inventory to the notification server failed: {exc}")
    lines = [f"{key}: {value}" for key, value in sorted(sent.facts.facts.items())]
    lines += [f"addresses: {', '.join(sent.facts.addresses)}", f"os: {sent.facts.os}"]
    lines += [f"interpreters: {', '.join(sent.facts.interpreters)}"]
    for key in ("uptime_s", "disk_free_bytes", "memory_available_bytes"):
        lines.append(f"{key}: {getattr(sent, key)}")
    return outcome.succeeded("inventory sent\n" + "\n".join(lines))
