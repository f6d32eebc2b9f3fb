"""R7 scale advice: are the agents' intervals right for how many computers there are?

Two checks, per collection of the agent configuration and per task server:

1. The seed's rule: more than ``DEFAULT_INTERVAL_LIMIT`` (500) computers on the
   default intervals is always a warning. The recommended intervals grow with the
   number of computers (Task Request Interval 5 minutes per 500 computers, up
   to an hour; Send Status Interval 1 minute per 500, up to 15 minutes). Longer
   intervals cost no responsiveness: a run reaches agents by tickle at once
   (R6), and a live run's status is sent at once; the intervals only bound the
   fallback polling and the batching of routine status.
2. Capacity: the requests a task server's agents make per second (a poll every
   Task Request Interval, a notification-channel renewal every
   ``CHANNEL_RENEW_S``) must stay under ``TARGET_SHARE`` of what one task server
   core answers (the NS setting ``ts_capacity_rps``, by default the rate
   ``bench/poll.py`` measured). Above it, the advice is the Task Request
   Interval that brings the load back under the share.
3. Open files: a task server reports in its heartbeat how many notification
   channels its open-files limit allows (``server.capacity``). A client limit
   above that lets the NS assign agents whose channels it must refuse; they
   still poll, but are not tickled (R6), so "run now" waits for their next poll.

The capacity figures come from ``task_server_capacities`` and the NS setting
``ts_capacity_rps``, which ``/metrics`` exports as they are (``ns.metrics``), so a
dashboard shows what the advice compares: ``taskfleet_ns_task_server_capacity_rps``,
``taskfleet_ns_task_server_channel_capacity``, ``taskfleet_ns_task_server_client_limit``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.ns import drafts
from taskfleet.ns.agent_config import DEFAULT_SSI_S, DEFAULT_TASK_REQUEST_INTERVAL_MIN, AgentConfig
from taskfleet.ns.collections import load_membership
from taskfleet.server.capacity import open_files_for
from taskfleet.storage.models import Computer, TaskServer

DEFAULT_INTERVAL_LIMIT = 500
TASK_REQUEST_INTERVAL_STEP_MIN, TASK_REQUEST_INTERVAL_MAX_MIN = (
    DEFAULT_TASK_REQUEST_INTERVAL_MIN,
    60.0,
)
SSI_STEP_S, SSI_MAX_S = DEFAULT_SSI_S, 900.0
CHANNEL_RENEW_S = 50.0  # the agent's default --channel-wait
TARGET_SHARE = 0.5


@dataclass
class Advice:
    """What a scope (a collection's configuration, or a task server) should change."""

    scope: str  # "collection Lab" or "task server ts-a"
    computers: int
    task_request_interval_min: float
    send_status_interval_s: float
    warnings: list[str] = field(default_factory=list)
    recommended_task_request_interval_min: float | None = None
    recommended_send_status_interval_s: float | None = None
    # The collection whose configuration entry to change, when the scope is one.
    collection: str | None = None

    @property
    def ok(self) -> bool:
        return not self.warnings


def on_defaults(task_request_interval_min: float, ssi_s: float) -> bool:
    """Either interval at its default or shorter: that one still needs raising."""
    return task_request_interval_min <= DEFAULT_TASK_REQUEST_INTERVAL_MIN or ssi_s <= DEFAULT_SSI_S


def scaled(computers: int) -> tuple[float, float]:
    """Intervals for ``computers``: one step per started 500, capped."""
    steps = max(1, math.ceil(computers / DEFAULT_INTERVAL_LIMIT))
    return (
        min(TASK_REQUEST_INTERVAL_MAX_MIN, TASK_REQUEST_INTERVAL_STEP_MIN * steps),
        min(SSI_MAX_S, SSI_STEP_S * steps),
    )


def for_collection(
    name: str, computers: int, task_request_interval_min: float, ssi_s: float
) -> Advice:
    advice = Advice(
        f"collection {name}", computers, task_request_interval_min, ssi_s, collection=name
    )
    if computers > DEFAULT_INTERVAL_LIMIT and on_defaults(task_request_interval_min, ssi_s):
        recommended_task_request_interval_min, ssi = scaled(computers)
        # never advise shortening one
        recommended_task_request_interval_min = max(
            recommended_task_request_interval_min, task_request_interval_min
        )
        ssi = max(ssi, ssi_s)
        advice.recommended_task_request_interval_min = recommended_task_request_interval_min
        advice.recommended_send_status_interval_s = ssi
        advice.warnings.append(
            f"{computers} computers on the default intervals "
            f"({task_request_interval_min:g} min, {ssi_s:g} s): "
            f"more than {DEFAULT_INTERVAL_LIMIT} is too many; set the Task Request Interval to "
            f"{recommended_task_request_interval_min:g} min and the Send Status Interval to "
            f"{ssi:g} s (runs still start at once by tickle)"
        )
    return advice


def request_rate(task_request_intervals_s: list[float]) -> float:
    """Requests per second a task server gets from idle agents with these intervals."""
    return sum(1.0 / t for t in task_request_intervals_s) + len(task_request_intervals_s) / (
        CHANNEL_RENEW_S
    )


def for_task_server(
    name: str, task_request_intervals_s: list[float], capacity_rps: float
) -> Advice:
    n = len(task_request_intervals_s)
    mean_task_request_interval_min = (
        sum(task_request_intervals_s) / n / 60.0 if n else DEFAULT_TASK_REQUEST_INTERVAL_MIN
    )
    advice = Advice(f"task server {name}", n, mean_task_request_interval_min, DEFAULT_SSI_S)
    budget = capacity_rps * TARGET_SHARE
    rate = request_rate(task_request_intervals_s)
    if n and rate > budget:
        channels = n / CHANNEL_RENEW_S
        if channels >= budget:
            advice.warnings.append(
                f"{n} agents renew their notification channels at {channels:.0f} requests/s, "
                f"more than {TARGET_SHARE:.0%} of this task server's capacity "
                f"({capacity_rps:g}/s): add a task server and split the agents"
            )
            return advice
        task_request_interval_s = n / (budget - channels)
        advice.recommended_task_request_interval_min = math.ceil(task_request_interval_s / 60.0)
        advice.warnings.append(
            f"{n} agents make {rate:.0f} requests/s, more than {TARGET_SHARE:.0%} of this task "
            f"server's capacity ({capacity_rps:g}/s): set their Task Request Interval to at "
            f"least {math.ceil(task_request_interval_s / 60.0):g} min, or add a task server"
        )
    return advice


def check_channels(advice: Advice, client_limit: int, channel_capacity: int | None) -> None:
    """Warn when the client limit is above the channels the task server can hold."""
    if channel_capacity is None or client_limit <= channel_capacity:
        return
    advice.warnings.append(
        f"its client limit ({client_limit}) is more than the {channel_capacity} notification "
        "channels its open-files limit allows: agents past that are not tickled and wait "
        "for their next poll. Raise its open-files limit (LimitNOFILE= or ulimit -n) to at "
        f"least {open_files_for(client_limit)}, or lower its client limit to "
        f"{channel_capacity}"
    )


@dataclass(frozen=True)
class TaskServerCapacity:
    """What one task server may hold, as the advice and ``/metrics`` both read it."""

    id: int
    name: str
    client_limit: int  # in effect: the admin's setting, else the task server's own
    channel_capacity: int | None  # from its heartbeat (its open-files limit); None: unknown
    assigned: int  # computers assigned to it now


async def task_server_capacities(session: AsyncSession) -> list[TaskServerCapacity]:
    rows = await session.execute(
        select(
            TaskServer.id,
            TaskServer.name,
            TaskServer.client_limit,
            TaskServer.channel_capacity,
            TaskServer.assigned_count,
        ).order_by(TaskServer.id)
    )
    return [TaskServerCapacity(*row) for row in rows.all()]


DEFAULTS = "All Computers (defaults)"


async def fleet_advice(
    session: AsyncSession, capacity_rps: float, draft: bool = False
) -> list[Advice]:
    """Advice for every configuration entry (and the defaults) and every task server,
    for the applied agent configuration, or for the draft as if it were applied."""
    config: AgentConfig = (
        await drafts.draft_agent_config(session)
        if draft
        else (await drafts.applied(session)).agent_config
    )
    membership = await load_membership(session)  # the whole fleet: no id list
    governed: dict[str, list[Computer]] = {e.collection: [] for e in config.entries}
    governed[DEFAULTS] = []
    per_server: dict[int, list[float]] = {}
    for computer in await session.scalars(select(Computer)):
        if computer.id in membership.task_servers:
            continue  # a task server's own computer runs no agent
        entry = config.entry_for(membership, computer)
        governed[entry.collection if entry else DEFAULTS].append(computer)
        task_request_interval_min = (
            entry.task_request_interval_min if entry else DEFAULT_TASK_REQUEST_INTERVAL_MIN
        )
        if computer.task_server_id is not None:
            per_server.setdefault(computer.task_server_id, []).append(
                task_request_interval_min * 60.0
            )
    intervals = {e.collection: e for e in config.entries}
    out = []
    for name, members in governed.items():
        known = intervals.get(name)
        task_request_interval_min = (
            known.task_request_interval_min if known else DEFAULT_TASK_REQUEST_INTERVAL_MIN
        )
        ssi = known.send_status_interval_s if known else DEFAULT_SSI_S
        found = for_collection(name, len(members), task_request_interval_min, ssi)
        if name == DEFAULTS:
            found.collection = "All Computers"  # the defaults are set on All Computers
        out.append(found)
    for ts in await task_server_capacities(session):
        found = for_task_server(ts.name, per_server.get(ts.id, []), capacity_rps)
        check_channels(found, ts.client_limit, ts.channel_capacity)
        if ts.id in per_server or found.warnings:
            out.append(found)
    return out
