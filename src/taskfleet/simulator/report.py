"""Starting a run on the simulated fleet, following it at the NS, and the timeline it printed."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import aiohttp

from taskfleet.errors import TaskfleetError
from taskfleet.simulator.fleet import SimFleet


async def _admin(fleet: SimFleet, credential: str, method: str, path: str, body: Any = None) -> Any:
    headers = {"Authorization": f"Bearer {credential}"}
    async with fleet.http.request(
        method,
        fleet.ns_url + path,
        json=body,
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=60),
    ) as response:
        data = await response.json(content_type=None)
        if response.status >= 400:
            message = data.get("message") if isinstance(data, dict) else data
            raise TaskfleetError(f"the NS refused {method} {path}: {message}")
        return data


async def start_run(fleet: SimFleet, credential: str, task: str, targets: list[str]) -> int:
    """Run ``task`` on ``targets`` now (live, as the console's Run now does); its id."""
    fleet.next_run()
    run = await _admin(
        fleet, credential, "POST", "/api/runs", {"task": task, "targets": targets, "live": True}
    )
    return int(run["id"])


async def follow_run(
    fleet: SimFleet, credential: str, run_id: int, timeout: float, until_done: bool = True
) -> dict[str, Any]:
    """The run as the NS sees it once every instance ended (or ``timeout`` passed)."""
    deadline = time.monotonic() + timeout
    while True:
        run = await _admin(fleet, credential, "GET", f"/api/runs/{run_id}?instances=false")
        if run["done"] or time.monotonic() > deadline:
            assert fleet.run_started is not None
            run["seconds"] = round(time.monotonic() - fleet.run_started, 3)
            return dict(run)
        await asyncio.sleep(0.05)


def percentiles(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def at(share: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 3)

    return {"count": len(ordered), "p50": at(0.5), "p99": at(0.99), "max": round(ordered[-1], 3)}


def summary(fleet: SimFleet) -> dict[str, Any]:
    """What the simulation saw: enrolment and assignment rates, the run's timeline, errors."""
    assign_s = None
    if fleet.first_assigned is not None and fleet.last_assigned is not None:
        assign_s = round(fleet.last_assigned - fleet.started, 3)
    assigned = fleet.counters["assigned"]
    return {
        "agents": len(fleet.agents),
        "behaviours": dict(sorted(Counter(a.behaviour.value for a in fleet.agents).items())),
        "enrolled": fleet.counters["enrolled"],
        "assigned": assigned,
        "assign_seconds": assign_s,
        "assign_per_s": round(assigned / assign_s, 1) if assign_s else None,
        "timeline": timeline(fleet),
        "requests_per_s": {kind: _rates(counts) for kind, counts in fleet.requests.items()},
        # Every second's count, from started_at (wall clock), to line up with other events.
        "requests_by_second": {
            "started_at": fleet.started_wall,
            **{kind: _series(counts) for kind, counts in fleet.requests.items()},
        },
        "counters": dict(sorted(fleet.counters.items())),
        "errors": dict(fleet.errors.most_common(10)),
    }


def timeline(fleet: SimFleet) -> dict[str, Any]:
    """The current run: seconds from its start until agents were tickled, fetched, done."""
    times = list(fleet.times.values())
    return {
        "tickled": percentiles([t.tickled for t in times if t.tickled is not None]),
        "fetched": percentiles([t.fetched for t in times if t.fetched is not None]),
        "done": percentiles([t.done for t in times if t.done is not None]),
    }


def _rates(per_second: Counter[int]) -> dict[str, Any]:
    """Requests per second: the median second, the busiest one and when it was."""
    if not per_second:
        return {"median": 0, "peak": 0, "peak_at_s": None}
    seconds = range(min(per_second), max(per_second) + 1)
    counts = sorted(per_second.get(s, 0) for s in seconds)
    peak_at = max(per_second, key=lambda s: per_second[s])
    return {"median": counts[len(counts) // 2], "peak": per_second[peak_at], "peak_at_s": peak_at}


def _series(per_second: Counter[int]) -> list[int]:
    return [per_second.get(s, 0) for s in range(max(per_second, default=-1) + 1)]
