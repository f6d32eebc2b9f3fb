"""Maintenance windows as pure functions: parsing, open or closed, next opening."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskfleet.errors import InvalidInput
from taskfleet.ns.windows import WEEK_S, Window, next_open, open_collections, parse, parse_all

BERLIN = ZoneInfo("Europe/Berlin")


def at(*args: int, tz: ZoneInfo = BERLIN) -> float:
    return dt.datetime(*args, tzinfo=tz).timestamp()


def test_a_window_reads_as_written_and_prints_back() -> None:
    window = parse("Sat 22:00-Sun 04:00 Europe/Berlin")
    assert window == Window(5, 22 * 3600, 6, 4 * 3600, "Europe/Berlin")
    assert window.text() == "Sat 22:00-Sun 04:00 Europe/Berlin"
    assert parse("saturday 22:00:30 - Sunday 04:00 UTC").text() == "Sat 22:00:30-Sun 04:00 UTC"


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("Sat 22:00-Sun 04:00", "write it as"),
        ("Sat 22:00-Sun 04:00 Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ("Sat 22:00-Sun 04:00 ../../etc/passwd", "unknown time zone"),
        ("Sab 22:00-Sun 04:00 UTC", "'Sab' is not a weekday"),
        ("Sat 25:00-Sun 04:00 UTC", "'25:00' is not a time"),
        ("Sat 2:00-Sun 04:00 UTC", "'2:00' is not a time"),
        ("Sat 22:00-Sat 22:00 UTC", "starts when it ends"),
        ("", "write it as"),
    ],
)
def test_a_bad_window_is_refused_naming_the_field(spec: str, says: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse(spec)
    assert says in caught.value.message
    assert caught.value.field == "windows"


def test_open_on_saturday_night_in_berlin_not_in_utc_terms() -> None:
    window = parse("Sat 22:00-Sun 04:00 Europe/Berlin")
    # Saturday 2026-11-28 in Berlin (UTC+1 in winter)
    assert not window.is_open(at(2026, 11, 28, 21, 59))
    assert window.is_open(at(2026, 11, 28, 22, 0))
    assert window.is_open(at(2026, 11, 29, 3, 59))
    assert not window.is_open(at(2026, 11, 29, 4, 0))
    # 21:30 UTC is 22:30 in Berlin: open
    assert window.is_open(at(2026, 11, 28, 21, 30, tz=ZoneInfo("UTC")))


def test_a_window_over_the_end_of_the_week() -> None:
    window = parse("Sun 23:00-Mon 01:00 UTC")
    utc = ZoneInfo("UTC")
    assert window.is_open(at(2026, 11, 29, 23, 30, tz=utc))  # Sunday
    assert window.is_open(at(2026, 11, 30, 0, 30, tz=utc))  # Monday
    assert not window.is_open(at(2026, 11, 30, 1, 0, tz=utc))
    assert not window.is_open(at(2026, 11, 29, 22, 59, tz=utc))


def test_next_open_is_now_when_open_and_the_next_start_when_closed() -> None:
    windows = parse_all(["Sat 22:00-Sun 04:00 Europe/Berlin", "Wed 12:00-Wed 13:00 UTC"])
    wednesday = at(2026, 11, 25, 9, 0, tz=ZoneInfo("UTC"))
    assert next_open(windows, wednesday) == at(2026, 11, 25, 12, 0, tz=ZoneInfo("UTC"))
    thursday = at(2026, 11, 26, 9, 0, tz=ZoneInfo("UTC"))
    assert next_open(windows, thursday) == at(2026, 11, 28, 22, 0)
    assert next_open(windows, at(2026, 11, 28, 23, 0)) == at(2026, 11, 28, 23, 0)
    assert next_open([], thursday) is None


def test_open_collections_names_those_with_an_open_window() -> None:
    now = at(2026, 11, 28, 23, 0)
    by_collection = {
        1: [parse("Sat 22:00-Sun 04:00 Europe/Berlin")],
        2: [parse("Mon 01:00-Mon 02:00 Europe/Berlin")],
    }
    assert open_collections(by_collection, now) == {1}


windows_st = st.builds(
    Window,
    st.integers(0, 6),
    st.integers(0, 86_399),
    st.integers(0, 6),
    st.integers(0, 86_399),
    st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]),
).filter(lambda w: w.start != w.end)
moments = st.floats(1.7e9, 2.0e9, allow_nan=False)


@given(windows_st, moments)
def test_the_next_start_is_within_a_week_and_opens_the_window(window: Window, now: float) -> None:
    opens = window.next_start(now)
    # (a week plus a DST hour at most)
    assert now <= opens <= now + WEEK_S + 3600
    if window.timezone == "UTC":
        assert window.is_open(opens)


@given(windows_st)
def test_the_text_form_parses_back_to_the_same_window(window: Window) -> None:
    assert parse(window.text()) == window
