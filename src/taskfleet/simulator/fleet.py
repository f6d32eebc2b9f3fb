"""A simulated fleet: its agents, one HTTP connection pool, and what it saw happen.

State:
- ``agents``: every simulated agent; identities (computer id and credential)
  are kept in ``STATE_DIR/identities.json``, so a second simulation of the same
  fleet re-uses them instead of enrolling again;
- ``counters`` and ``errors``: totals for the display and the report;
- ``times``: per instance of the current run, when its agent was tickled,
  fetched it and had its final status acknowledged, measured from the run's
  start (``run_started``); ``next_run`` clears them;
- ``requests``: requests sent per whole second since the start, to the NS and to
  task servers, so a report can show the load a restart or a run puts on them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from taskfleet.errors import InvalidInput, TaskfleetError
from taskfleet.protocol.messages import InstanceState, StatusEvent, WorkItem
from taskfleet.protocol.private_file import write_private_json
from taskfleet.simulator.agent import SimAgent
from taskfleet.simulator.behaviour import Mix

AGENTS_PER_POOL = 32


@dataclass
class SimOptions:
    ns_url: str
    token: str
    agents: int
    mix: Mix = field(default_factory=lambda: Mix.parse("succeed"))
    prefix: str = "sim"
    subnet: str = "10.200.0.0/16"
    state_dir: Path | None = None
    startup_window_s: float = 10.0  # R11
    channel_wait_s: float = 50.0
    slow_s: float = 20.0
    offline_s: float = 3600.0
    ns_concurrency: int = 64
    seed: int = 1


@dataclass
class Times:
    tickled: float | None = None
    fetched: float | None = None
    done: float | None = None


class SimFleet:
    def __init__(self, options: SimOptions) -> None:
        if options.agents < 1:
            raise InvalidInput("--agents: simulate at least 1 agent", field="agents")
        self.options = options
        self.ns_url = options.ns_url.rstrip("/")
        self.counters: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.times: dict[int, Times] = {}
        self.run_started: float | None = None
        self.requests: dict[str, Counter[int]] = {"ns": Counter(), "ts": Counter()}
        self.started = time.monotonic()
        self.started_wall = time.time()
        self.first_assigned: float | None = None
        self.last_assigned: float | None = None
        self.ns_slots = asyncio.Semaphore(options.ns_concurrency)
        self._tickled_at: dict[int, float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sessions: list[aiohttp.ClientSession] = []
        self.agents = self._make_agents()

    @property
    def http(self) -> aiohttp.ClientSession:
        """The pool for the simulator's own calls (starting and following runs)."""
        return self.http_for(0)

    def http_for(self, index: int) -> aiohttp.ClientSession:
        """Agent ``index``'s connection pool: one per AGENTS_PER_POOL agents.

        A real agent has a client of its own; one pool for thousands of agents would
        rescan thousands of connections on every request (aiohttp's connector, like
        httpcore's pool, is built for a few hosts and tens of connections).
        """
        assert self._sessions, "start() the fleet first"
        return self._sessions[index // AGENTS_PER_POOL]

    def _make_agents(self) -> list[SimAgent]:
        try:
            network = ipaddress.ip_network(self.options.subnet)
        except ValueError:
            raise InvalidInput(
                f"--subnet {self.options.subnet!r} is not a network like 10.200.0.0/16",
                field="subnet",
            ) from None
        if network.num_addresses - 2 < self.options.agents:
            raise InvalidInput(
                f"--subnet {network} has room for fewer than {self.options.agents} agents",
                field="subnet",
            )
        behaviours = self.options.mix.assign(self.options.agents, self.options.seed)
        known = self._load_identities()
        agents = []
        for i in range(self.options.agents):
            name = f"{self.options.prefix}-{i + 1:05d}"
            agent = SimAgent(
                index=i,
                name=name,
                hardware_id=f"simulated-{name}",
                address=f"{network.network_address + 1 + i}/{network.prefixlen}",
                behaviour=behaviours[i],
                fleet=self,
            )
            if agent.hardware_id in known:
                agent.computer_id, agent.credential = known[agent.hardware_id]
            agents.append(agent)
        return agents

    # --- identities --------------------------------------------------------------------

    def _identity_file(self) -> Path | None:
        directory = self.options.state_dir
        return None if directory is None else directory / "identities.json"

    def _load_identities(self) -> dict[str, tuple[int, str]]:
        path = self._identity_file()
        if path is None or not path.exists():
            return {}
        try:
            data = json.loads(path.read_text())
            return {k: (int(v[0]), str(v[1])) for k, v in data.items()}
        except (ValueError, TypeError, IndexError, AttributeError):
            return {}  # unreadable: the agents enrol again

    def save_identities(self) -> None:
        path = self._identity_file()
        if path is None:
            return
        data = {a.hardware_id: [a.computer_id, a.credential] for a in self.agents if a.credential}
        write_private_json(path, data)

    # --- life ----------------------------------------------------------------------------

    async def start(self) -> None:
        pools = -(-len(self.agents) // AGENTS_PER_POOL)
        self._sessions = [
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300))
            for _ in range(pools)
        ]
        self.started = time.monotonic()
        self.started_wall = time.time()
        for agent in self.agents:
            self.spawn(agent.live(self.options.startup_window_s))

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.count_error(f"agent crashed: {task.exception()!r}"[:120])

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.save_identities()
        for session in self._sessions:
            await session.close()

    async def wait_connected(self, timeout: float) -> float:
        """Seconds until every agent has been given a task server.

        Offline agents count too: they enrol and are assigned, then go quiet. A run
        started before one of them enrolled would not target it, and its work would
        not be there to wait for it.
        """
        deadline = time.monotonic() + timeout
        while True:
            waiting = sum(1 for a in self.agents if a.state not in ("connected", "offline"))
            if not waiting:
                self.save_identities()
                return time.monotonic() - self.started
            if time.monotonic() > deadline:
                raise TaskfleetError(
                    f"{waiting} simulated agents still had no task server after {timeout:g} s"
                )
            await asyncio.sleep(0.2)

    # --- what the agents tell us ---------------------------------------------------------

    def count(self, what: str) -> None:
        self.counters[what] += 1

    def count_request(self, url: str) -> None:
        second = int(time.monotonic() - self.started)
        self.requests["ns" if url.startswith(self.ns_url) else "ts"][second] += 1

    def next_run(self) -> None:
        """Start timing a new run."""
        self.times.clear()
        self._tickled_at.clear()
        self.run_started = time.monotonic()

    def count_error(self, what: object) -> None:
        self.errors[str(what)] += 1

    def assigned(self, agent: SimAgent) -> None:
        self.counters["assigned"] += 1
        now = time.monotonic()
        if self.first_assigned is None:
            self.first_assigned = now
        self.last_assigned = now

    def _since_run(self) -> float | None:
        return None if self.run_started is None else time.monotonic() - self.run_started

    def tickled(self, agent: SimAgent) -> None:
        self.counters["tickles"] += 1
        self._tickled_at[agent.index] = time.monotonic()

    def fetched(self, agent: SimAgent, item: WorkItem) -> None:
        self.counters["fetched"] += 1
        times = self.times.setdefault(item.instance_id, Times())
        times.fetched = self._since_run()
        tickled = self._tickled_at.pop(agent.index, None)
        if tickled is not None and self.run_started is not None:
            times.tickled = tickled - self.run_started

    def reported(self, agent: SimAgent, event: StatusEvent) -> None:
        state = InstanceState(event.state)
        if state.terminal:
            self.counters[state.value] += 1
            self.times.setdefault(event.instance_id, Times()).done = self._since_run()

    def snapshot(self) -> dict[str, int]:
        """Agents by state, and work counters: what the live display shows."""
        states = Counter(a.state for a in self.agents)
        return {**states, **self.counters}
