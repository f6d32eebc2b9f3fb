"""What an agent request the task server cannot answer from memory may cost the NS.

An agent the task server does not know (not in its agent map, or its secret does not
match the map) is looked up at the NS: it may have been assigned or re-enrolled since
the map was loaded. Left alone, that makes every poll with an unknown id or a wrong
secret an NS round trip, and a script repeating such polls could spend the NS's CPU
and starve the task server's real agents. Two guards keep that cost bounded:

- ``Refusals``, a negative cache: an answer the NS gave ("not assigned here", or a
  credential whose secret did not match what the NS holds) is repeated from memory for
  ``NEGATIVE_TTL_S``, without asking again. Keyed by computer id for "not assigned"
  (whatever the secret) and by computer id and the hash of the secret presented for
  "wrong secret", so a re-enrolled agent's new secret is still looked up at once. At most
  ``NEGATIVE_MAX`` entries, oldest dropped first. Loading the agent map clears it: the
  map then says who is assigned here, so a newly assigned agent is refused no longer
  than until the next map load (which every assignment change triggers) or the TTL.
- ``LookupLimit``, token buckets on lookups only (an agent answered from memory costs
  no token): one per source address (``PER_SOURCE``; up to ``MAX_SOURCES`` addresses
  remembered, least recently used dropped) and one for the whole task server
  (``OVERALL``), which bounds what many sources together cost the NS. A lookup without
  a token is refused 429 with ``Retry-After``; an agent told so polls again in a few
  seconds without counting it towards failover (R4), by when the map usually has it.

State is in memory only and starts empty: a restarted task server loads its map first.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass

from taskfleet.errors import NotAssigned, TooManyRequests, Unauthenticated

NEGATIVE_TTL_S = 10.0
NEGATIVE_MAX = 10_000
MAX_SOURCES = 10_000
ANY_SECRET = ""  # the key's secret part for "not assigned here", whatever the secret


@dataclass(frozen=True)
class Rate:
    per_s: float
    burst: float


PER_SOURCE = Rate(per_s=5.0, burst=20.0)
OVERALL = Rate(per_s=20.0, burst=100.0)


class TokenBucket:
    """``burst`` tokens at most, refilled at ``per_s`` a second; one token per lookup."""

    __slots__ = ("rate", "tokens", "updated")

    def __init__(self, rate: Rate, now: float) -> None:
        self.rate = rate
        self.tokens = rate.burst
        self.updated = now

    def wait_s(self, now: float) -> float:
        """0 when a token is there (not taken), else seconds until one will be."""
        self.tokens = min(self.rate.burst, self.tokens + (now - self.updated) * self.rate.per_s)
        self.updated = now
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate.per_s

    def take(self) -> None:
        self.tokens -= 1.0


class LookupLimit:
    def __init__(
        self,
        per_source: Rate = PER_SOURCE,
        overall: Rate = OVERALL,
        max_sources: int = MAX_SOURCES,
    ) -> None:
        self.per_source = per_source
        self.max_sources = max_sources
        self.overall = TokenBucket(overall, time.monotonic())
        # Least recently used first; a source dropped here starts again with a full bucket,
        # which the overall bucket still bounds.
        self.sources: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, source: str) -> None:
        """Take one lookup token for ``source`` and one overall, or raise TooManyRequests."""
        now = time.monotonic()
        bucket = self.sources.get(source)
        if bucket is None:
            bucket = self.sources[source] = TokenBucket(self.per_source, now)
            if len(self.sources) > self.max_sources:
                self.sources.popitem(last=False)
        else:
            self.sources.move_to_end(source)
        wait = max(bucket.wait_s(now), self.overall.wait_s(now))
        if wait > 0:
            raise TooManyRequests(
                "too many requests with credentials this task server must check with the "
                "notification server; try again after Retry-After seconds",
                retry_after_s=math.ceil(wait),
            )
        bucket.take()
        self.overall.take()


class Refusals:
    """The NS's recent negative answers about agents, repeated from memory."""

    def __init__(self, ttl_s: float = NEGATIVE_TTL_S, max_entries: int = NEGATIVE_MAX) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        # (computer id, secret hash or ANY_SECRET) -> when the answer expires (monotonic);
        # oldest first, since every entry lives equally long.
        self._until: OrderedDict[tuple[int, str], float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._until)

    def check(self, computer_id: int, secret_hash: str, not_assigned: str) -> None:
        """Raise the remembered refusal, if there is one still valid."""
        now = time.monotonic()
        if self._valid((computer_id, ANY_SECRET), now):
            raise NotAssigned(not_assigned)
        if self._valid((computer_id, secret_hash), now):
            raise Unauthenticated("agent credential not recognised; enrol the agent again")

    def not_assigned(self, computer_id: int) -> None:
        self._remember((computer_id, ANY_SECRET))

    def wrong_secret(self, computer_id: int, secret_hash: str) -> None:
        self._remember((computer_id, secret_hash))

    def clear(self) -> None:
        self._until.clear()

    def _valid(self, key: tuple[int, str], now: float) -> bool:
        until = self._until.get(key)
        if until is None:
            return False
        if until > now:
            return True
        del self._until[key]
        return False

    def _remember(self, key: tuple[int, str]) -> None:
        self._until.pop(key, None)
        self._until[key] = time.monotonic() + self.ttl_s
        while len(self._until) > self.max_entries:
            self._until.popitem(last=False)
