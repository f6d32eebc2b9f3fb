"""R3: which task server serves a computer, and why. Pure: no I/O, table-tested.

The caller gathers the facts (``Candidate`` per task server, the applied
Task Servers policy, sites) and records the ``Decision``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

STEP_POLICY = "policy"
STEP_SUBNET = "subnet"
STEP_SITE = "site"
STEP_NS = "ns-fallback"
STEPS = (STEP_POLICY, STEP_SUBNET, STEP_SITE, STEP_NS)
# A proximity step names at most this many task servers it skipped (the reason is stored
# with every assignment); the policy step names all, its lists being the admin's own.
MAX_SKIPPED_NAMED = 5


@dataclass(frozen=True)
class Candidate:
    """A task server as the assignment sees it."""

    id: int
    name: str
    available: bool  # R2: approved, enabled, heartbeat fresh
    why_unavailable: str = ""
    addresses: tuple[str, ...] = ()
    site_ids: frozenset[int] = frozenset()  # sites it serves explicitly
    load: int = 0  # computers assigned to it, not counting the one being assigned
    client_limit: int = 5000

    @property
    def at_limit(self) -> bool:
        return self.load >= self.client_limit

    def unusable(self) -> str:
        """Empty when usable for a new agent, else the reason it is not."""
        if not self.available:
            return self.why_unavailable or "not available"
        if self.at_limit:
            return f"at its client limit ({self.load}/{self.client_limit})"
        return ""


@dataclass(frozen=True)
class SiteInfo:
    id: int
    name: str
    subnets: tuple[str, ...]


@dataclass(frozen=True)
class ResolvedEntry:
    """A Task Servers policy entry, its task servers resolved to ids (``ns.policy`` has names)."""

    collection: str
    task_server_ids: tuple[int, ...]


@dataclass(frozen=True)
class Decision:
    task_server_id: int | None  # None: the NS serves the computer
    task_server_name: str
    step: str
    reason: str


@dataclass
class _Notes:
    lines: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.lines.append(text)

    def skipped(self, where: str, lines: list[str]) -> None:
        """Task servers a proximity step passed over; a few by name, then how many more."""
        for line in lines[:MAX_SKIPPED_NAMED]:
            self.add(line)
        if len(lines) > MAX_SKIPPED_NAMED:
            self.add(f"{len(lines) - MAX_SKIPPED_NAMED} more {where} skipped")

    def text(self, conclusion: str) -> str:
        return "; ".join([*self.lines, conclusion])


def interfaces(addresses: Iterable[str]) -> list[Interface]:
    """The addresses that say where a host is: loopback and link-local ones every host
    has (127.0.0.1/8, fe80::/64) would put every computer "on the same subnet"."""
    out: list[Interface] = []
    for text in addresses:
        try:
            interface = ipaddress.ip_interface(text)
        except ValueError:
            continue
        if not (interface.is_loopback or interface.is_link_local or interface.is_unspecified):
            out.append(interface)
    return out


def choose(
    *,
    addresses: Sequence[str],
    member_of: frozenset[str],
    policy: Sequence[ResolvedEntry],
    servers: dict[int, Candidate],
    sites: Sequence[SiteInfo],
    exclude: frozenset[int] = frozenset(),
    ns_name: str = "notification server",
) -> Decision:
    notes = _Notes()

    def usable(ts_id: int) -> str:
        if ts_id in exclude:
            return "the agent could not reach it (3 failed attempts)"
        ts = servers.get(ts_id)
        if ts is None:
            return "no longer registered"
        return ts.unusable()

    # Step 1: the Task Servers policy, collections in policy order, each list in order.
    applicable = [entry for entry in policy if entry.collection in member_of]
    for entry in applicable:
        for ts_id in entry.task_server_ids:
            why_not = usable(ts_id)
            name = servers[ts_id].name if ts_id in servers else f"#{ts_id}"
            if not why_not:
                return Decision(
                    ts_id,
                    name,
                    STEP_POLICY,
                    notes.text(f"first available on the policy list for {entry.collection!r}"),
                )
            notes.add(f"policy {entry.collection!r}: {name} skipped, {why_not}")
    if not applicable:
        notes.add("no Task Servers policy list applies to its collections")

    mine = interfaces(addresses)

    # Step 2a: a task server on the exact same subnet. Those that are there but cannot
    # take the computer are named in the reason, as the policy step does.
    same_subnet, skipped = [], []
    for ts in sorted(servers.values(), key=lambda ts: ts.id):
        shared = _shared_subnets(mine, interfaces(ts.addresses))
        if not shared:
            continue
        why_not = usable(ts.id)
        if why_not:
            skipped.append(f"subnet {', '.join(shared)}: {ts.name} skipped, {why_not}")
        else:
            same_subnet.append(ts)
    notes.skipped("on its subnet", skipped)
    if same_subnet:
        ts = _least_loaded(same_subnet)
        nets = ", ".join(sorted({str(i.network) for i in mine}))
        many = f", least loaded of {len(same_subnet)}" if len(same_subnet) > 1 else ""
        return Decision(
            ts.id, ts.name, STEP_SUBNET, notes.text(f"on the same subnet ({nets}){many}")
        )

    # Step 2b: a task server serving one of the computer's sites.
    my_sites = [s for s in sites if _in_site(mine, s)]
    if my_sites:
        serving, skipped = [], []
        for ts in sorted(servers.values(), key=lambda ts: ts.id):
            theirs = [s for s in my_sites if s.id in _served_sites(ts, sites)]
            if not theirs:
                continue
            why_not = usable(ts.id)
            if why_not:
                names = ", ".join(repr(s.name) for s in theirs)
                skipped.append(f"site {names}: {ts.name} skipped, {why_not}")
            else:
                serving.append(ts)
        notes.skipped("serving its site", skipped)
        if serving:
            ts = _least_loaded(serving)
            names = ", ".join(repr(s.name) for s in my_sites)
            many = f", least loaded of {len(serving)}" if len(serving) > 1 else ""
            return Decision(ts.id, ts.name, STEP_SITE, notes.text(f"serves its site {names}{many}"))
        notes.add("no available task server serves its site")
    elif not sites:
        notes.add("no sites defined (each subnet is its own site) and none available on its subnet")
    else:
        notes.add("none available on its subnet and it is in no site")

    # Step 3: the NS itself.
    return Decision(None, ns_name, STEP_NS, notes.text("the notification server serves it"))


def _shared_subnets(mine: list[Interface], theirs: list[Interface]) -> list[str]:
    return sorted({str(a.network) for a in mine for b in theirs if a.network == b.network})


def _in_site(mine: list[Interface], site: SiteInfo) -> bool:
    return within(mine, networks(site.subnets))


def within(mine: Iterable[Interface], nets: Sequence[Network]) -> bool:
    """Is one of these addresses in one of these subnets? Sites and the collections'
    subnet rule both ask this, so "in 10.1.0.0/16" means the same everywhere."""
    return any(i.ip in net for i in mine for net in nets if i.version == net.version)


def _served_sites(ts: Candidate, sites: Sequence[SiteInfo]) -> set[int]:
    theirs = interfaces(ts.addresses)
    return set(ts.site_ids) | {s.id for s in sites if _in_site(theirs, s)}


def networks(subnets: Iterable[str]) -> list[Network]:
    """The subnets that parse; the others are left out."""
    out: list[Network] = []
    for text in subnets:
        try:
            out.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            continue
    return out


def _least_loaded(candidates: list[Candidate]) -> Candidate:
    # Ties go to the lowest id so the choice is stable.
    return min(candidates, key=lambda ts: (ts.load / max(ts.client_limit, 1), ts.load, ts.id))
