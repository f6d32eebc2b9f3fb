"""Channel renewals stay spread (R11): each agent's channel is held until its own phase."""

from __future__ import annotations

from collections import Counter

import pytest

from taskfleet.taskserver.agent_api import held_for

WAIT = 50.0
AGENTS = range(1, 10_001)


def test_channels_opened_together_come_back_spread_over_half_the_wait() -> None:
    # Given 10,000 channels opened in the same instant (a run tickled them all)
    now = 1_000_000.0
    ends = [now + held_for(c, WAIT, now) for c in AGENTS]
    # Then each is held between half and all of the wait asked, and their renewals are
    # spread: no second holds more than twice the even share
    assert all(WAIT / 2 <= end - now <= WAIT for end in ends)
    per_second = Counter(int(end) for end in ends)
    assert max(per_second.values()) <= 2 * len(AGENTS) / (WAIT / 2)


def test_after_the_first_renewal_each_channel_is_held_the_whole_wait() -> None:
    now = 1_000_000.0
    for computer_id in (1, 2, 977, 10_000):
        first = now + held_for(computer_id, WAIT, now)
        assert held_for(computer_id, WAIT, first) == pytest.approx(WAIT)
