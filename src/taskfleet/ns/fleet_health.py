"""The fleet at a glance (the console's dashboard): which computers made contact lately.

Task servers are left out: they report through heartbeats, which the task servers'
list shows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.ns.agent_config import AgentConfig
from taskfleet.ns.collections import load_membership
from taskfleet.storage.models import Computer

# A computer counts as seen when it made contact within twice its Task Request
# Interval (one interval, plus jitter and a missed poll) and a minute's grace.
SEEN_INTERVALS = 2
SEEN_GRACE_S = 60.0


@dataclass
class Fleet:
    total: int = 0
    seen: int = 0
    never: int = 0
    not_seen: list[Computer] = field(default_factory=list)


async def of_fleet(session: AsyncSession, config: AgentConfig, now: float | None = None) -> Fleet:
    """How many computers there are, were seen in time, were never seen, and the others;
    each computer's interval is what the applied agent configuration ``config`` gives it."""
    computers = list(await session.scalars(select(Computer)))
    membership = await load_membership(session)  # the whole fleet: no id list
    now = time.time() if now is None else now
    fleet = Fleet(total=len(computers))
    for computer in computers:
        if computer.id in membership.task_servers:
            fleet.total -= 1
            continue
        interval = config.settings_for(membership, computer).task_request_interval_s
        if computer.last_contact is None:
            fleet.never += 1
        elif now - computer.last_contact <= SEEN_INTERVALS * interval + SEEN_GRACE_S:
            fleet.seen += 1
        else:
            fleet.not_seen.append(computer)
    return fleet
