"""Retries of a failed script on this computer, with back-off (a task's ``retries``).

Why on the agent: the NS hands an instance out once and the agent's ledger says it
ran (R8: never twice per instance). Retries done here are attempts *within* the
one instance, so that rule stays simple, and no attempt needs a round trip to the
NS or waits for a task request interval.

The task's timeout is the instance's whole budget: each attempt gets what is left
of it, and no retry starts unless its back-off wait ends with at least
``MIN_ATTEMPT_S`` (or a tenth of the timeout, if less) left. So all attempts end
inside the NS's deadline for the instance (timeout + grace, ns.expiry). Waits are
``backoff``, ``2 x backoff``, ``4 x backoff``...; only ``Failed`` is retried
(``TimedOut`` has used the budget; a canceled instance stops).

The reported output is the last attempt's, after one line per earlier attempt with
its state, return code and the tail of its output.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from taskfleet.agent.outcome import Outcome
from taskfleet.protocol.messages import InstanceState

MAX_RETRIES = 10
MIN_ATTEMPT_S = 5.0
TAIL_CHARS = 200


async def run(
    retries: int,
    backoff_s: float,
    timeout_s: float,
    attempt: Callable[[float], Awaitable[Outcome]],
    stop: Callable[[], bool] = lambda: False,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> Outcome:
    """Run ``attempt(seconds left)`` until it does not fail, ``retries`` times more at
    most, within ``timeout_s`` in all."""
    retries = max(0, min(int(retries), MAX_RETRIES))
    backoff_s = max(0.0, float(backoff_s))
    deadline = clock() + timeout_s
    earlier: list[str] = []
    result = await attempt(timeout_s)
    trailer = ""
    for n in range(retries):
        if result.state != InstanceState.FAILED or stop():
            break
        wait = backoff_s * 2**n
        if deadline - (clock() + wait) < min(MIN_ATTEMPT_S, timeout_s / 10):
            trailer = f"\n[taskfleet: not retried: the {timeout_s:g}s timeout leaves no time]"
            break
        earlier.append(_summary(n + 1, result))
        await sleep(wait)
        if stop():
            break
        result = await attempt(max(0.0, deadline - clock()))
    if not earlier and not trailer:
        return result
    head = "".join(f"{line}\n" for line in earlier)
    if earlier:
        head += f"[taskfleet: attempt {len(earlier) + 1}:]\n"
    return Outcome(result.state, result.return_code, head + result.output + trailer)


def _summary(number: int, result: Outcome) -> str:
    tail = result.output.strip()[-TAIL_CHARS:].replace("\n", " | ")
    return (
        f"[taskfleet: attempt {number}: {result.state}, return code {result.return_code}; "
        f"output ends: {tail}]"
    )
