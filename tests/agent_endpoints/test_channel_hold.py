"""Channel renewals stay spread (R11): each agent's channel is held until its own phase."""

from __future__ import annotations

from collections import Counter

import pytest

from taskfleet.agent_endpoints.api import MIN_HOLD_S, held_for

WAIT = 50.0
AGENTS = range(1, 10_001)


def test_channels_opened_together_come_back_spread_over_the_wait() -> None:
    # Given 10,000 channels opened in the same instant (a run tickled them all)
    now = 1_000_000.0
    ends = [now + held_for(c, WAIT, now) for c in AGENTS]
    # Then none is held past the wait asked (and a moment), and their renewals are spread
    # over the whole wait: no second holds more than twice the steady share
    assert all(MIN_HOLD_S <= end - now <= WAIT + MIN_HOLD_S for end in ends)
    per_second = Counter(int(end) for end in ends)
    assert max(per_second.values()) <= 2 * len(AGENTS) / WAIT


def test_after_the_first_renewal_each_channel_is_held_the_whole_wait() -> None:
    now = 1_000_000.0
    for computer_id in (1, 2, 977, 10_000):
        first = now + held_for(computer_id, WAIT, now)
        assert held_for(computer_id, WAIT, first) == pytest.approx(WAIT)
