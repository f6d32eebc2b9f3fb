"""Scripted behaviours of simulated agents, and how the command line names their mix."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from taskfleet.errors import InvalidInput


class Behaviour(enum.StrEnum):
    SUCCEED = "succeed"  # every task succeeds at once
    FAIL = "fail"  # every task fails at once, return code 1
    SLOW = "slow"  # every task succeeds after the slow delay
    OFFLINE = "offline"  # enrols and is assigned, then goes quiet for the offline time
    RESTART = "restart"  # on work: Received, then the agent restarts (R4/R10), then Succeeded


@dataclass(frozen=True)
class Mix:
    """Shares of each behaviour, e.g. ``succeed=90,fail=5,slow=5``."""

    shares: tuple[tuple[Behaviour, float], ...]

    @classmethod
    def parse(cls, text: str) -> Mix:
        shares: dict[Behaviour, float] = {}
        for part in text.split(","):
            name, _, weight = part.strip().partition("=")
            try:
                behaviour = Behaviour(name.strip())
            except ValueError:
                known = ", ".join(b.value for b in Behaviour)
                raise InvalidInput(
                    f"--behaviour: unknown behaviour {name!r}; known: {known}", field="behaviour"
                ) from None
            try:
                share = float(weight) if weight else 1.0
            except ValueError:
                share = -1.0
            if not 0 <= share < float("inf"):
                raise InvalidInput(
                    f"--behaviour: {part.strip()!r} needs a share of 0 or more, like succeed=90",
                    field="behaviour",
                )
            shares[behaviour] = share
        if sum(shares.values()) <= 0:
            raise InvalidInput("--behaviour: give at least one share above 0", field="behaviour")
        return cls(tuple(shares.items()))

    def assign(self, count: int, seed: int) -> list[Behaviour]:
        """Exact shares, rounded, shuffled with ``seed`` (the same fleet every time)."""
        total = sum(share for _, share in self.shares)
        chosen: list[Behaviour] = []
        for behaviour, share in self.shares:
            chosen += [behaviour] * round(count * share / total)
        first = self.shares[0][0]
        chosen = (chosen + [first] * count)[:count]
        random.Random(seed).shuffle(chosen)
        return chosen
