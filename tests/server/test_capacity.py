"""Open files split into connections and channels; the channel gate's refusals and stop."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from taskfleet.agent_endpoints.channels import RECONNECT_MIN_S, ChannelGate
from taskfleet.agent_endpoints.tickle import Tickler
from taskfleet.errors import Busy
from taskfleet.server.capacity import Capacity, open_files_for

CASES = [
    # open files, reserve, connections, channels, dropped above
    (256, 96, 160, 144, 208),
    (1024, 96, 928, 836, 976),
    (20_000, 96, 19_904, 17_914, 19_952),
    (100, 96, 32, 16, 80),  # absurdly low: still some of each
]


@pytest.mark.parametrize(("files", "reserve", "connections", "channels", "drop"), CASES)
def test_open_files_are_split_into_a_reserve_connections_and_channels(
    files: int, reserve: int, connections: int, channels: int, drop: int
) -> None:
    capacity = Capacity(files, reserve)
    assert (capacity.connections, capacity.channels, capacity.drop_above) == (
        connections,
        channels,
        drop,
    )


def test_the_soft_limit_is_raised_to_the_hard_limit() -> None:
    # In a child process started with a soft limit of 100 and a hard limit of 300
    code = (
        "import resource; from taskfleet.server.capacity import raise_open_files_limit; "
        "print(raise_open_files_limit(), resource.getrlimit(resource.RLIMIT_NOFILE))"
    )
    out = subprocess.run(
        ["prlimit", "--nofile=100:300", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "(100, 300) (300, 300)"


def test_the_gate_refuses_channels_past_its_capacity_with_a_retry_after() -> None:
    gate = ChannelGate(capacity=2)
    gate.admit(1)
    gate.admit(1)  # one computer may hold two channels for a moment (a reconnect)
    with pytest.raises(Busy) as refused:
        gate.admit(2)
    assert refused.value.retry_after_s is not None and 30 <= refused.value.retry_after_s <= 90
    assert "open-files limit" in refused.value.message
    gate.release(1)
    gate.admit(2)
    assert gate.open == 2


def test_an_agent_with_a_parked_channel_may_replace_it_when_the_gate_is_full() -> None:
    # (the Tickler answers the older channel at once, which releases its place)
    gate = ChannelGate(capacity=1)
    gate.admit(1)
    gate.admit(1)
    with pytest.raises(Busy):
        gate.admit(2)


async def test_stop_wakes_every_parked_channel_and_refuses_new_ones() -> None:
    tickler, gate = Tickler(), ChannelGate()
    parked = []
    for computer_id in (1, 2, 3):
        gate.admit(computer_id)
        parked.append(asyncio.create_task(tickler.wait(computer_id, 30)))
    await asyncio.sleep(0.01)
    assert not any(task.done() for task in parked)

    gate.stop(tickler)

    async with asyncio.timeout(1):
        assert await asyncio.gather(*parked) == [True, True, True]
    assert gate.stopping
    with pytest.raises(Busy) as refused:
        gate.admit(4)
    retry = refused.value.retry_after_s
    assert retry is not None and RECONNECT_MIN_S <= retry <= 2 * RECONNECT_MIN_S
    assert "stopping" in gate.stopping_error().message


@pytest.mark.parametrize("channels", [17, 144, 5000, 15_000, 50_000])
def test_open_files_for_is_the_smallest_limit_that_holds_the_channels(channels: int) -> None:
    files = open_files_for(channels)
    assert Capacity(files).channels >= channels > Capacity(files - 1).channels
