"""The output limit where the wire enters: cut with the marker, never refused (R12), and
status requests bounded in bytes."""

from __future__ import annotations

import asyncio
import sys

from pydantic import TypeAdapter

from taskfleet.agent.runner import run_script
from taskfleet.protocol.fields import (
    MAX_OUTPUT_LIMIT,
    NUL_SYMBOL,
    TRUNCATION_MARKER,
    Output,
    capped_output,
)
from taskfleet.protocol.messages import StatusEvent, by_request_size, event_size

OUTPUT = TypeAdapter(Output)


def event(n: int, output: str | None) -> StatusEvent:
    return StatusEvent(f"ev-{n}", 1, 1, "Succeeded", 1.0, 0, output)


def test_an_output_over_the_limit_is_cut_with_the_marker_and_never_cut_twice() -> None:
    # Given an output 200 characters (400 bytes) over a limit of 10
    cut = capped_output("x" * 10 + "é" * 200, 10)
    # Then the first 10 characters stay and the marker counts the bytes dropped
    assert cut == "x" * 10 + TRUNCATION_MARKER.format(dropped=400)
    # and an output already cut by an earlier hop is left as it is
    assert capped_output(cut, 10) == cut
    assert capped_output("short", 10) == "short"


def test_the_wire_field_cuts_rather_than_refuses_and_escapes_nul() -> None:
    # Given an output field 1 MiB over the largest limit, with a NUL in it
    big = "\x00" + "y" * (MAX_OUTPUT_LIMIT + 1024 * 1024)
    # When a server validates it
    seen = OUTPUT.validate_python(big)
    # Then it is accepted, escaped, and cut to the largest limit plus the marker
    assert seen.startswith(NUL_SYMBOL + "y")
    marker = TRUNCATION_MARKER.format(dropped=1024 * 1024 + 1)
    assert seen.endswith(marker) and len(seen) == MAX_OUTPUT_LIMIT + len(marker)


def test_status_requests_are_bounded_in_bytes() -> None:
    # Given 30 events of 100 KiB of output and 30 small ones
    events = [event(n, "z" * 100 * 1024) for n in range(30)] + [event(n, "ok") for n in range(30)]
    # When they are put into requests of at most 1 MiB
    requests = by_request_size(events, budget=1024 * 1024)
    # Then no request is over the budget, the order is kept, and none is lost
    assert all(sum(event_size(e) for e in r) <= 1024 * 1024 for r in requests)
    assert [e for r in requests for e in r] == events
    assert [len(r) for r in requests] == [10, 10, 40]  # the small ones fit the last
    # and an event larger than the budget goes alone
    assert by_request_size([event(1, "q" * 2000), event(2, "r")], budget=100) == [
        [event(1, "q" * 2000)],
        [event(2, "r")],
    ]


def test_the_agent_keeps_the_limit_it_is_given_and_reads_the_rest() -> None:
    # Given a script printing 300 KiB and a limit of 100 KiB
    script = "import sys; sys.stdout.write('a' * 300 * 1024); print('done', file=sys.stderr)"
    outcome = asyncio.run(run_script("python", script, 30, output_limit=100 * 1024))
    # Then it ends normally (never blocked on a full pipe) with 100 KiB and the marker
    assert outcome.return_code == 0 and not outcome.timed_out, outcome
    assert outcome.output == "a" * 100 * 1024 + TRUNCATION_MARKER.format(
        dropped=200 * 1024 + len("done\n")
    )
    assert sys.executable  # the python interpreter is this one
