"""Collection rules as a table: which computers a collection takes in (ns/rules.py, pure)."""

from __future__ import annotations

from typing import Any

import pytest

from taskfleet.ns.rules import Evaluator, Subject

COLLECTIONS: dict[str, dict[str, Any]] = {
    "All Computers": {"builtin": "all"},
    "Task Servers": {"builtin": "task_servers"},
    "Approved Task Servers": {"builtin": "approved_task_servers"},
    "Web": {"name_pattern": "WEB-*"},
    "Odd digit": {"name_pattern": "pc-?[13579]"},
    "Linux": {"os": "linux*"},
    "Subnet 10.1": {"cidr": ["10.1.0.0/16", "2001:db8::/32"]},
    "Loopback": {"cidr": ["127.0.0.0/8"]},
    "Role db": {"fact": {"role": "db"}},
    "Linux web": {"name_pattern": "web-*", "os": "Linux*"},
    "Pilot": {},  # static members only
    "Web or pilot": {"include": ["Web", "Pilot"]},
    "Subnet 10.1 but not Linux": {"include": ["Subnet 10.1"], "exclude": ["Linux"]},
    "Not task servers": {"include": ["All Computers"], "exclude": ["Task Servers"]},
}
IDS = {name: n for n, name in enumerate(COLLECTIONS, start=100)}
EVALUATOR = Evaluator(
    {name: (IDS[name], rules) for name, rules in COLLECTIONS.items()},
    static={IDS["Pilot"]: {7}},
    task_servers={8: "approved", 9: "pending"},
)


def pc(id: int, name: str, os: str = "Windows 11", *addresses: str, **facts: Any) -> Subject:
    return Subject(id, name, os, addresses, facts)


CASES = [
    (pc(1, "Web-01", "Linux 6.1", "10.1.2.3/24"),
     {"Web", "Linux", "Linux web", "Subnet 10.1", "Web or pilot"}),
    (pc(2, "web-02", "Windows 11", "10.1.2.4/24"),
     {"Web", "Subnet 10.1", "Web or pilot", "Subnet 10.1 but not Linux"}),
    (pc(3, "pc-13"), {"Odd digit"}),
    (pc(4, "pc-12"), set()),
    (pc(5, "db-1", "Linux", "10.2.0.1/16", role="db"), {"Linux", "Role db"}),
    (pc(6, "db-2", "", "2001:db8::5/64", role=5), {"Subnet 10.1", "Subnet 10.1 but not Linux"}),
    (pc(7, "pc-7"), {"Pilot", "Web or pilot"}),
    (pc(8, "ts-1"), {"Task Servers", "Approved Task Servers"}),
    (pc(9, "ts-2"), {"Task Servers"}),
    # Loopback, link-local and unparsable addresses say nothing about where a host is.
    (pc(10, "pc-10", "", "127.0.0.1/8", "fe80::1/64", "not-an-address"), set()),
]  # fmt: skip


@pytest.mark.parametrize(("computer", "expected"), CASES, ids=[c.name for c, _ in CASES])
def test_which_collections_take_a_computer_in(computer: Subject, expected: set[str]) -> None:
    everyone = {"All Computers"} | ({"Not task servers"} if computer.id not in (8, 9) else set())
    found = {name for name in COLLECTIONS if EVALUATOR.contains(name, computer)}
    assert found == expected | everyone
    assert EVALUATOR.member_of(computer) == {IDS[name] for name in found}


def test_unknown_collections_and_cycles_hold_no_one() -> None:
    evaluator = Evaluator(
        {"A": (1, {"include": ["B"]}), "B": (2, {"include": ["A"]}), "C": (3, {"include": ["Z"]})},
        static={},
        task_servers={},
    )
    computer = pc(1, "pc-1")
    assert not any(evaluator.contains(name, computer) for name in ("A", "B", "C", "Z"))


def test_a_change_affects_the_collections_that_include_or_exclude_it() -> None:
    assert EVALUATOR.affected_by({"Linux"}) == {"Linux", "Subnet 10.1 but not Linux"}
    assert EVALUATOR.affected_by({"Web"}) == {"Web", "Web or pilot"}
    assert EVALUATOR.affected_by({"All Computers"}) == {"All Computers", "Not task servers"}
    assert EVALUATOR.affected_by({"Odd digit"}) == {"Odd digit"}
