"""R3 as a table: which task server a computer gets, by which step, and the recorded reason."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from taskfleet.ns.assignment_rules import (
    STEP_NS,
    STEP_POLICY,
    STEP_SITE,
    STEP_SUBNET,
    Candidate,
    ResolvedEntry,
    SiteInfo,
    choose,
)


def ts(id: int, name: str, address: str = "10.9.9.9/24", **kw: object) -> Candidate:
    return Candidate(
        id=id,
        name=name,
        available=kw.pop("available", True),  # type: ignore[arg-type]
        why_unavailable=str(kw.pop("why", "heartbeat stale (40s old)")),
        addresses=(address,),
        **kw,
    )  # type: ignore[arg-type]


@dataclass
class Case:
    id: str
    servers: list[Candidate]
    expect: str | None  # task server name, None for the NS
    step: str
    reason_has: list[str]
    policy: list[ResolvedEntry] = field(default_factory=list)
    member_of: frozenset[str] = frozenset({"Lab"})
    addresses: tuple[str, ...] = ("10.1.1.50/24",)
    sites: list[SiteInfo] = field(default_factory=list)
    exclude: frozenset[int] = frozenset()
    reason_lacks: list[str] = field(default_factory=list)


CASES = [
    Case(
        "loopback and link-local addresses, which every host has, are no subnet",
        [ts(1, "ts-1", address="127.0.0.1/8"), ts(2, "ts-2", address="fe80::1/64")],
        None,
        STEP_NS,
        ["none available on its subnet", "the notification server serves it"],
        addresses=("10.1.1.50/24", "127.0.0.1/8", "fe80::2/64"),
    ),
    Case(
        "first available on the policy list",
        [ts(1, "ts-1"), ts(2, "ts-2")],
        "ts-1",
        STEP_POLICY,
        ["first available on the policy list for 'Lab'"],
        policy=[ResolvedEntry("Lab", (1, 2))],
    ),
    Case(
        "failover down the list",
        [
            ts(1, "ts-1", available=False),
            ts(2, "ts-2", available=False, why="pending, not approved"),
            ts(3, "ts-3"),
        ],
        "ts-3",
        STEP_POLICY,
        ["ts-1 skipped, heartbeat stale", "ts-2 skipped, pending, not approved", "first available"],
        policy=[ResolvedEntry("Lab", (1, 2, 3))],
    ),
    Case(
        "list of a collection the computer is not in does not apply",
        [ts(1, "ts-1", address="10.1.1.2/24"), ts(2, "ts-2")],
        "ts-1",
        STEP_SUBNET,
        ["no Task Servers policy list applies", "same subnet (10.1.1.0/24)"],
        policy=[ResolvedEntry("Servers", (2,))],
    ),
    Case(
        "collections walked in policy order",
        [ts(1, "ts-1"), ts(2, "ts-2")],
        "ts-2",
        STEP_POLICY,
        ["'Desktops'"],
        policy=[
            ResolvedEntry("Servers", (1,)),
            ResolvedEntry("Desktops", (2,)),
            ResolvedEntry("Lab", (1,)),
        ],
        member_of=frozenset({"Desktops", "Lab"}),
    ),
    Case(
        "every listed one unavailable: proximity takes over",
        [ts(1, "ts-1", available=False), ts(2, "ts-near", address="10.1.1.3/24")],
        "ts-near",
        STEP_SUBNET,
        ["ts-1 skipped", "same subnet"],
        policy=[ResolvedEntry("Lab", (1,))],
    ),
    Case(
        "proximity: exact subnet, not merely a nearby one",
        [ts(1, "ts-other", address="10.1.2.3/24"), ts(2, "ts-same", address="10.1.1.200/24")],
        "ts-same",
        STEP_SUBNET,
        ["same subnet (10.1.1.0/24)"],
    ),
    Case(
        "several on the subnet: the least loaded",
        [
            ts(1, "ts-busy", address="10.1.1.2/24", load=900),
            ts(2, "ts-idle", address="10.1.1.3/24", load=10),
        ],
        "ts-idle",
        STEP_SUBNET,
        ["least loaded of 2"],
    ),
    Case(
        "by site when none is on the subnet (explicitly serving the site)",
        [ts(1, "ts-far"), ts(2, "ts-site", address="10.2.0.5/24", site_ids=frozenset({7}))],
        "ts-site",
        STEP_SITE,
        ["serves its site 'Head office'"],
        sites=[
            SiteInfo(7, "Head office", ("10.1.0.0/16",)),
            SiteInfo(8, "Branch", ("10.2.0.0/16",)),
        ],
    ),
    Case(
        "by site, the task server's own address being in the site",
        [ts(1, "ts-far"), ts(2, "ts-in-site", address="10.1.7.5/24")],
        "ts-in-site",
        STEP_SITE,
        ["serves its site 'Head office'"],
        sites=[SiteInfo(7, "Head office", ("10.1.0.0/16",))],
    ),
    Case(
        "by site, least loaded among several",
        [
            ts(1, "ts-a", address="10.1.7.5/24", load=50, client_limit=100),
            ts(2, "ts-b", address="10.1.8.5/24", load=60, client_limit=1000),
        ],
        "ts-b",
        STEP_SITE,
        ["least loaded of 2"],
        sites=[SiteInfo(7, "Head office", ("10.1.0.0/16",))],
    ),
    Case(
        "a task server at its client limit is skipped",
        [ts(1, "ts-full", load=5000), ts(2, "ts-2")],
        "ts-2",
        STEP_POLICY,
        ["ts-full skipped, at its client limit (5000/5000)"],
        policy=[ResolvedEntry("Lab", (1, 2))],
    ),
    Case(
        "at its limit on the subnet too: NS fallback, and the reason names it",
        [ts(1, "ts-full", address="10.1.1.2/24", load=10, client_limit=10)],
        None,
        STEP_NS,
        [
            "subnet 10.1.1.0/24: ts-full skipped, at its client limit (10/10)",
            "no sites defined",
            "the notification server serves it",
        ],
    ),
    Case(
        "proximity names each one on its subnet it skipped, and why",
        [
            ts(1, "ts-stale", address="10.1.1.2/24", available=False),
            ts(
                2, "ts-pending", address="10.1.1.3/24", available=False, why="pending, not approved"
            ),
            ts(3, "ts-ok", address="10.1.1.4/24"),
            ts(4, "ts-elsewhere", address="10.7.7.7/24", available=False),
        ],
        "ts-ok",
        STEP_SUBNET,
        [
            "subnet 10.1.1.0/24: ts-stale skipped, heartbeat stale (40s old)",
            "subnet 10.1.1.0/24: ts-pending skipped, pending, not approved",
            "on the same subnet (10.1.1.0/24)",
        ],
        reason_lacks=["ts-elsewhere"],  # not on its subnet: not a candidate, so not "skipped"
    ),
    Case(
        "proximity names the site's task servers it skipped, then chooses by site",
        [
            ts(1, "ts-subnet-full", address="10.1.1.2/24", load=5, client_limit=5),
            ts(2, "ts-site-off", address="10.1.9.9/24", available=False, why="disabled"),
            ts(3, "ts-site", address="10.2.0.5/24", site_ids=frozenset({7})),
        ],
        "ts-site",
        STEP_SITE,
        [
            "subnet 10.1.1.0/24: ts-subnet-full skipped, at its client limit (5/5)",
            "site 'Head office': ts-subnet-full skipped, at its client limit (5/5)",
            "site 'Head office': ts-site-off skipped, disabled",
            "serves its site 'Head office'",
        ],
        sites=[SiteInfo(7, "Head office", ("10.1.0.0/16",))],
    ),
    Case(
        "every one serving its site skipped: NS fallback, each named",
        [ts(1, "ts-site", address="10.1.7.5/24", available=False, why="no heartbeat yet")],
        None,
        STEP_NS,
        [
            "site 'Head office': ts-site skipped, no heartbeat yet",
            "no available task server serves its site",
        ],
        sites=[SiteInfo(7, "Head office", ("10.1.0.0/16",))],
    ),
    Case(
        "the one it failed over from, on its subnet, is named as skipped (R4)",
        [ts(1, "ts-gone", address="10.1.1.2/24"), ts(2, "ts-next", address="10.1.1.3/24")],
        "ts-next",
        STEP_SUBNET,
        ["subnet 10.1.1.0/24: ts-gone skipped, the agent could not reach it"],
        exclude=frozenset({1}),
    ),
    Case(
        "many skipped on its subnet: the first few by name, then how many more",
        [ts(i, f"ts-{i}", address=f"10.1.1.{i + 1}/24", available=False) for i in range(1, 9)],
        None,
        STEP_NS,
        ["ts-1 skipped", "ts-5 skipped", "3 more on its subnet skipped"],
        reason_lacks=["ts-6 ", "ts-8 "],
    ),
    Case(
        "nothing available anywhere: the NS serves it",
        [ts(1, "ts-1", available=False)],
        None,
        STEP_NS,
        ["ts-1 skipped", "the notification server serves it"],
        policy=[ResolvedEntry("Lab", (1,))],
    ),
    Case(
        "no task servers at all: the NS serves it",
        [],
        None,
        STEP_NS,
        ["no Task Servers policy list applies", "notification server serves it"],
    ),
    Case(
        "the task server the agent failed over from is not chosen again (R4)",
        [ts(1, "ts-1"), ts(2, "ts-2")],
        "ts-2",
        STEP_POLICY,
        ["ts-1 skipped, the agent could not reach it"],
        policy=[ResolvedEntry("Lab", (1, 2))],
        exclude=frozenset({1}),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_r3_assignment(case: Case) -> None:
    # Given the task servers, policy and sites of the case
    servers = {s.id: s for s in case.servers}
    # When the NS chooses for a computer
    decision = choose(
        addresses=list(case.addresses),
        member_of=case.member_of,
        policy=case.policy,
        servers=servers,
        sites=case.sites,
        exclude=case.exclude,
    )
    # Then the expected task server is chosen by the expected step, and the reason says why
    chosen = servers[decision.task_server_id].name if decision.task_server_id else None
    assert (chosen, decision.step) == (case.expect, case.step), decision.reason
    for fragment in case.reason_has:
        assert fragment in decision.reason
    for fragment in case.reason_lacks:
        assert fragment not in decision.reason
