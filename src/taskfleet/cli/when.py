"""How the CLI reads ages, moments and sizes: ``90d``, ``2h``, ``2026-11-25T08:00``, ``1MiB``.

A bad value stops the command with one line naming the option (``cli.client.fail``).
Moments are read by ``datetime.fromisoformat``; ages and sizes are a number and a unit.
"""

from __future__ import annotations

import datetime
import re
import time

from taskfleet.cli.client import fail
from taskfleet.protocol.fields import MAX_OUTPUT_LIMIT

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_AGE_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZE = re.compile(r"^\s*(\d+)\s*(b|kib|k|mib|m)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kib": 1024, "m": 1024**2, "mib": 1024**2}
MAX_AGE_S = 100 * 365 * 86400.0


def age_seconds(text: str, option: str) -> float:
    """``30m``, ``2h``, ``90d``, ``2w`` or plain seconds."""
    found = _AGE.match(text)
    if found is None:
        fail(f"{option} {text!r}: give an age like 30m, 2h, 90d or 2w")
    seconds = float(found.group(1)) * _AGE_UNITS[found.group(2).lower()]
    if seconds > MAX_AGE_S:
        fail(f"{option} {text!r}: at most 100 years")
    return seconds


def kept_for(text: str, option: str) -> float:
    """How long history is kept: an age, or ``0``/``never`` to keep it forever (0.0)."""
    if text.strip().lower() in ("0", "never", "forever"):
        return 0.0
    seconds = age_seconds(text, option)
    if seconds < 3600:
        fail(f"{option} {text!r}: keep history at least an hour (or 0 to keep it forever)")
    return seconds


def moment(text: str, option: str, now: float | None = None) -> float:
    """A point in time as UNIX seconds: an age back from now (``2h``) or an ISO 8601
    date or time (``2026-11-25``, ``2026-11-25T08:00``; UTC unless it names a zone)."""
    now = time.time() if now is None else now
    if _AGE.match(text):
        return now - age_seconds(text, option)
    try:
        at = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        fail(f"{option} {text!r}: give an age like 2h or 7d, or a date like 2026-11-25T08:00")
    if at.tzinfo is None:
        at = at.replace(tzinfo=datetime.UTC)
    return at.timestamp()


def output_size(text: str, option: str) -> int:
    """A size of output: ``1MiB``, ``512KiB``, ``65536``; at most MAX_OUTPUT_LIMIT."""
    found = _SIZE.match(text)
    if found is None:
        fail(f"{option} {text!r}: give a size like 512KiB or 1MiB")
    size = int(found.group(1)) * _SIZE_UNITS[(found.group(2) or "").lower()]
    if not 1024 <= size <= MAX_OUTPUT_LIMIT:
        fail(f"{option} {text!r}: give 1KiB to {MAX_OUTPUT_LIMIT // 1024**2}MiB")
    return size
