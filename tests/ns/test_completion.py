"""Completion requirements as a pure function: which requirement ends a run, and when."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskfleet.errors import InvalidInput
from taskfleet.ns.completion import Requirements, check


@dataclass
class FakeRun:
    requirements: dict[str, Any] = field(default_factory=dict)
    created_at: float = 1000.0


def test_without_requirements_a_run_ends_when_every_computer_is_done() -> None:
    run = FakeRun()
    assert check(run, {"Succeeded": 2, "Running": 1}, 5000) is None
    ended = check(run, {"Succeeded": 2, "Failed": 1}, 5000)
    assert ended is not None and ended.by == "all_done"


def test_min_count_ends_the_run_but_not_before_the_min_wait() -> None:
    run = FakeRun({"min_count": 2, "min_wait_s": 60})
    counts = {"Succeeded": 2, "Pending": 3}
    assert check(run, counts, 1030) is None  # 30 s in: the minimum wait holds it
    ended = check(run, counts, 1060)
    assert ended is not None and (ended.by, ended.at) == ("min_count", 1060)
    assert check(run, {"Succeeded": 1, "Pending": 4}, 1060) is None


def test_min_share_counts_computers_done_in_any_final_state() -> None:
    run = FakeRun({"min_share": 0.5})
    assert check(run, {"Failed": 1, "Expired": 1, "Pending": 3}, 1001) is None
    ended = check(run, {"Failed": 1, "Expired": 1, "Succeeded": 1, "Pending": 3}, 1001)
    assert ended is not None and ended.by == "min_share"


def test_max_wait_ends_the_run_at_its_deadline() -> None:
    run = FakeRun({"max_wait_s": 300})
    assert check(run, {"Pending": 5}, 1299) is None
    ended = check(run, {"Pending": 5}, 1400)
    assert ended is not None and (ended.by, ended.at) == ("max_wait", 1300)


def test_all_done_ends_the_run_before_its_min_wait() -> None:
    ended = check(FakeRun({"min_wait_s": 600, "min_count": 3}), {"Succeeded": 2}, 1001)
    assert ended is not None and ended.by == "all_done"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"min_share": 0}, "requirements.min_share"),
        ({"min_share": 1.5}, "requirements.min_share"),
        ({"min_count": 0}, "requirements.min_count"),
        ({"min_count": 2.5}, "requirements.min_count"),
        ({"min_wait_s": -1}, "requirements.min_wait_s"),
        ({"max_wait_s": "soon"}, "requirements.max_wait_s"),
        ({"min_wait_s": 60, "max_wait_s": 30}, "requirements.max_wait_s"),
        ({"min_count": 1, "min_share": 0.5}, "requirements.min_share"),
        ({"max_percent": 5}, "requirements.max_percent"),
    ],
)
def test_bad_requirements_are_refused_naming_the_field(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        Requirements.parse(raw)
    assert caught.value.field == field


states = st.sampled_from(["Pending", "Received", "Running", "Succeeded", "Failed", "Expired"])


@given(
    st.dictionaries(states, st.integers(0, 50), min_size=1),
    st.one_of(st.none(), st.integers(1, 60)),
    st.one_of(st.none(), st.floats(0, 600)),
    st.floats(0, 1200),
)
def test_once_complete_a_run_stays_complete_as_time_passes_and_more_finish(
    counts: dict[str, int], min_count: int | None, max_wait: float | None, later: float
) -> None:
    needs = {k: v for k, v in {"min_count": min_count, "max_wait_s": max_wait}.items() if v}
    run = FakeRun(needs)
    first = check(run, counts, 1000 + later)
    if first is not None:
        # more time passes and every unfinished computer finishes: still complete
        finished = {"Succeeded": sum(counts.values())}
        assert check(run, counts, 2000 + later) is not None
        assert check(run, finished, 2000 + later) is not None
