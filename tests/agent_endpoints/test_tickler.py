"""The tickle registry: one channel per agent, a newer one replacing the older (R6)."""

from __future__ import annotations

import asyncio

from taskfleet.agent_endpoints.tickle import Tickler


async def test_a_tickle_wakes_the_parked_channel() -> None:
    tickler = Tickler()
    waiting = asyncio.create_task(tickler.wait(1, timeout=5))
    await asyncio.sleep(0)
    assert tickler.open_channels == 1
    tickler.tickle(1)
    assert await waiting is True
    assert tickler.open_channels == 0


async def test_a_tickle_with_no_channel_open_is_remembered_for_the_next_one() -> None:
    tickler = Tickler()
    tickler.tickle(1)
    assert await tickler.wait(1, timeout=5) is True
    # ... once: the channel after that waits again
    assert await tickler.wait(1, timeout=0.01) is False


async def test_a_newer_channel_replaces_the_older_which_answers_quiet_at_once() -> None:
    # Given an agent's channel parked on a connection it has given up on
    tickler = Tickler()
    stale = asyncio.create_task(tickler.wait(1, timeout=5))
    await asyncio.sleep(0)
    # When the agent opens a new channel
    fresh = asyncio.create_task(tickler.wait(1, timeout=5))
    await asyncio.sleep(0)
    # Then the old one answers "no tickle" at once, and the tickle reaches the new one
    assert await asyncio.wait_for(stale, 1) is False
    tickler.tickle(1)
    assert await fresh is True
    assert tickler.open_channels == 0


async def test_a_channel_that_times_out_leaves_nothing_behind() -> None:
    tickler = Tickler()
    assert await tickler.wait(1, timeout=0.01) is False
    assert tickler.open_channels == 0
    assert not tickler._waiters and not tickler._remembered
