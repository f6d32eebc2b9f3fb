"""Maintenance windows (SPEC section 2): weekly windows with a time zone, per collection.

A window is written ``Sat 22:00-Sun 04:00 Europe/Berlin``: from a weekday and a
wall-clock time to a weekday and time, in an IANA time zone; it may run over the
end of the week (``Sun 23:00-Mon 01:00``). A computer in collections that have
windows gets its instances only while one of those windows is open, unless the
run ignores windows; a computer in no such collection is never held. The pure
functions are here; what delivery asks, and the re-tickle when a window opens, is
in ``ns.window_hold``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from taskfleet.errors import InvalidInput

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
DAY_S = 86_400
WEEK_S = 7 * DAY_S
MAX_WINDOWS = 50  # per collection
# "<day> <HH:MM[:SS]>-<day> <HH:MM[:SS]> <zone>"; days as three letters or in full.
_SHAPE = re.compile(
    r"^\s*(?P<d1>[A-Za-z]+)\s+(?P<t1>[0-9:]+)\s*-\s*(?P<d2>[A-Za-z]+)\s+(?P<t2>[0-9:]+)"
    r"\s+(?P<zone>\S+)\s*$"
)
EXAMPLE = "Sat 22:00-Sun 04:00 Europe/Berlin"


@dataclass(frozen=True)
class Window:
    start_day: int  # Monday = 0
    start_s: int  # seconds of the day
    end_day: int
    end_s: int
    timezone: str

    @property
    def start(self) -> int:
        """Seconds from Monday 00:00 of the local week."""
        return self.start_day * DAY_S + self.start_s

    @property
    def end(self) -> int:
        return self.end_day * DAY_S + self.end_s

    def text(self) -> str:
        return (
            f"{DAYS[self.start_day]} {_clock(self.start_s)}-"
            f"{DAYS[self.end_day]} {_clock(self.end_s)} {self.timezone}"
        )

    def is_open(self, now: float) -> bool:
        offset = _week_offset(now, zone(self.timezone))
        if self.start < self.end:
            return self.start <= offset < self.end
        return offset >= self.start or offset < self.end  # over the end of the week

    def next_start(self, now: float) -> float:
        """The first time at or after ``now`` this window opens (wall clock in its zone)."""
        tz = zone(self.timezone)
        local = dt.datetime.fromtimestamp(now, tz)
        day = local.date() + dt.timedelta(days=(self.start_day - local.weekday()) % 7)
        for weeks in (0, 1):
            opens = _at(day + dt.timedelta(weeks=weeks), self.start_s, tz).timestamp()
            if opens >= now:
                return opens
        return opens  # (not reached: a week later is always later)


def _clock(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}" + (f":{secs:02d}" if secs else "")


def _at(day: dt.date, seconds: int, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=tz) + dt.timedelta(seconds=seconds)


def _week_offset(now: float, tz: ZoneInfo) -> int:
    local = dt.datetime.fromtimestamp(now, tz)
    return local.weekday() * DAY_S + local.hour * 3600 + local.minute * 60 + local.second


def zone(name: str, field: str = "timezone") -> ZoneInfo:
    """The IANA time zone ``name``; a 400 naming ``field`` when there is none."""
    try:
        if not name or name != name.strip() or ".." in name or name.startswith("/"):
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidInput(
            f"unknown time zone {name!r}; give an IANA name such as Europe/Berlin or UTC",
            field=field,
        ) from None


def _day(text: str, spec: str, field: str) -> int:
    for number, day in enumerate(DAYS):
        if text.lower() in (day.lower(), _FULL[number]):
            return number
    raise InvalidInput(
        f"window {spec!r}: {text!r} is not a weekday; use Mon, Tue, Wed, Thu, Fri, Sat, Sun",
        field=field,
    )


_FULL = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _time(text: str, spec: str, field: str) -> int:
    try:
        if len(text) not in (5, 8):  # HH:MM or HH:MM:SS, zero-padded
            raise ValueError(text)
        clock = dt.time.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"window {spec!r}: {text!r} is not a time; use HH:MM (24-hour), e.g. 22:00",
            field=field,
        ) from None
    return clock.hour * 3600 + clock.minute * 60 + clock.second


def parse(spec: str, field: str = "windows") -> Window:
    """``Sat 22:00-Sun 04:00 Europe/Berlin`` as a Window; a 400 naming ``field`` if not."""
    if not isinstance(spec, str) or len(spec) > 200:
        raise InvalidInput(f"a window is text like {EXAMPLE!r}", field=field)
    shape = _SHAPE.match(spec)
    if shape is None:
        raise InvalidInput(
            f"window {spec!r}: write it as <day> <HH:MM>-<day> <HH:MM> <time zone>, "
            f"e.g. {EXAMPLE!r}",
            field=field,
        )
    window = Window(
        _day(shape["d1"], spec, field),
        _time(shape["t1"], spec, field),
        _day(shape["d2"], spec, field),
        _time(shape["t2"], spec, field),
        zone(shape["zone"], field).key,
    )
    if window.start == window.end:
        raise InvalidInput(
            f"window {spec!r} starts when it ends; a window is shorter than a week", field=field
        )
    return window


def parse_all(specs: Iterable[str], field: str = "windows") -> list[Window]:
    found = [parse(spec, field) for spec in specs]
    if len(found) > MAX_WINDOWS:
        raise InvalidInput(f"at most {MAX_WINDOWS} windows per collection", field=field)
    return found


def any_open(windows: Iterable[Window], now: float) -> bool:
    return any(w.is_open(now) for w in windows)


def open_collections(by_collection: Mapping[int, Iterable[Window]], now: float) -> set[int]:
    """Ids of the collections with a window open at ``now``."""
    return {cid for cid, windows in by_collection.items() if any_open(windows, now)}


def next_open(windows: Iterable[Window], now: float) -> float | None:
    """``now`` if a window is open, else when the first one opens; None without windows."""
    windows = list(windows)
    if not windows:
        return None
    if any_open(windows, now):
        return now
    return min(w.next_start(now) for w in windows)
