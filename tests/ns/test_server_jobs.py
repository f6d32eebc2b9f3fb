"""How a server job reads a finished step across its computers."""

from __future__ import annotations

import pytest

from taskfleet.ns.server_jobs import step_result


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([("Succeeded", 0), ("Succeeded", 0)], (True, 0)),
        ([("Succeeded", 0), ("Failed", 2)], (False, None)),
        ([("Failed", 3), ("Failed", 3)], (False, 3)),
        # computers still pending when the requirements ended the step count neither way
        ([("Succeeded", 0), ("Pending", None), ("Running", None)], (True, 0)),
        ([("Pending", None)], (False, None)),  # nobody finished: not a success
        ([("Succeeded", 0), ("TimedOut", None)], (False, None)),
        ([("Expired", None), ("Expired", None)], (False, None)),
        ([], (False, None)),
    ],
)
def test_a_step_succeeded_when_everyone_who_finished_succeeded(
    rows: list[tuple[str, int | None]], expected: tuple[bool, int | None]
) -> None:
    assert step_result(rows) == expected
