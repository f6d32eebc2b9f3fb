"""The hub's long polls: run followers woken by a change, and everything answered on close."""

from __future__ import annotations

import asyncio

from taskfleet.ns.hub import Hub


async def test_a_run_change_wakes_the_followers_of_that_run_only() -> None:
    hub = Hub()
    with hub.watch_run(1) as one, hub.watch_run(1) as also_one, hub.watch_run(2) as two:
        hub.runs_changed([1, 99])
        assert one.is_set() and also_one.is_set() and not two.is_set()
        one.clear()
        hub.runs_changed([2])
        assert two.is_set() and not one.is_set()


async def test_close_answers_every_long_poll_at_once_and_later_ones_without_waiting() -> None:
    hub = Hub()
    events_wait = asyncio.create_task(hub.wait(7, since=hub.version(7), timeout=30))
    with hub.watch_run(3) as followed:
        await asyncio.sleep(0.01)
        assert not events_wait.done() and not followed.is_set()

        await hub.close()

        async with asyncio.timeout(1):
            assert await events_wait == 0  # unchanged version: nothing new, just answered
        assert followed.is_set()
    async with asyncio.timeout(1):
        await hub.wait(7, since=0, timeout=30)
    with hub.watch_run(4) as later:
        assert later.is_set()
