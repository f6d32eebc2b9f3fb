"""Every wait of the agent is jittered (R5, R11): 10,000 agents that started together,
or lost their task server together, must not come back in the same second."""

from __future__ import annotations

import random

JITTER = 0.1  # +-10% on every interval


def jittered(seconds: float) -> float:
    return seconds * random.uniform(1 - JITTER, 1 + JITTER)
