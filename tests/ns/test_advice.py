"""R7 scale advice as a table of cases: the seed's 500-computer rule, and task-server capacity."""

from __future__ import annotations

import pytest

from taskfleet.ns import advice

CASES = [
    # computers, Task Request Interval (min), Send Status Interval (s), warned, recommended
    (500, 5.0, 60.0, False, None),
    (501, 5.0, 60.0, True, (10.0, 120.0)),
    (1200, 5.0, 60.0, True, (15.0, 180.0)),
    (100_000, 5.0, 60.0, True, (60.0, 900.0)),
    (5000, 60.0, 900.0, False, None),  # both raised: the admin has acted
    (5000, 30.0, 60.0, True, (50.0, 600.0)),  # one still on its default
    (5000, 5.0, 300.0, True, (50.0, 600.0)),
    (5000, 90.0, 60.0, True, (90.0, 600.0)),  # never advise shortening an interval
    (501, 1.0, 10.0, True, (10.0, 120.0)),  # below the defaults is "on defaults" or worse
]


@pytest.mark.parametrize(
    ("computers", "task_request_interval_min", "ssi", "warned", "recommended"), CASES
)
def test_collection_advice(
    computers: int,
    task_request_interval_min: float,
    ssi: float,
    warned: bool,
    recommended: tuple[float, float] | None,
) -> None:
    found = advice.for_collection("Lab", computers, task_request_interval_min, ssi)
    assert found.ok is not warned
    if recommended is None:
        assert found.recommended_task_request_interval_min is None
    else:
        assert (
            found.recommended_task_request_interval_min,
            found.recommended_send_status_interval_s,
        ) == recommended
        assert f"{computers} computers on the default intervals" in found.warnings[0]


def test_task_server_within_capacity_is_fine() -> None:
    # 10,000 agents polling every 5 min: 33 polls/s + 200 channel renewals/s << 4,500/s
    assert advice.for_task_server("ts-a", [300.0] * 10_000, 9000.0).ok


def test_task_server_over_capacity_gets_an_interval_that_fits() -> None:
    # 2,000 agents polling every second on a server that answers 1,000/s
    found = advice.for_task_server("ts-a", [1.0] * 2000, 1000.0)
    assert not found.ok
    task_request_interval_min = found.recommended_task_request_interval_min
    assert task_request_interval_min is not None
    assert (
        advice.request_rate([task_request_interval_min * 60.0] * 2000)
        <= 1000.0 * advice.TARGET_SHARE
    )
    assert "set their Task Request Interval to at least" in found.warnings[0]


def test_task_server_whose_channels_alone_are_too_many_needs_another_server() -> None:
    found = advice.for_task_server("ts-a", [300.0] * 50_000, 1000.0)
    assert not found.ok and found.recommended_task_request_interval_min is None
    assert "add a task server and split the agents" in found.warnings[0]


def test_a_client_limit_above_the_channel_capacity_is_a_warning() -> None:
    # A task server under `ulimit -n 1024` holds 836 channels; its client limit is 5,000
    found = advice.for_task_server("ts-a", [300.0] * 100, 9000.0)
    advice.check_channels(found, 5000, 836)
    assert not found.ok
    assert "client limit (5000) is more than the 836 notification channels" in found.warnings[0]
    # the advice names an open-files limit that holds 5,000 channels, or the lower limit
    assert (
        "at least 5651" in found.warnings[0]
        and "lower its client limit to 836" in (found.warnings[0])
    )


@pytest.mark.parametrize(("client_limit", "capacity"), [(5000, None), (5000, 5000), (10, 836)])
def test_a_client_limit_within_the_channel_capacity_is_fine(
    client_limit: int, capacity: int | None
) -> None:
    found = advice.for_task_server("ts-a", [300.0] * 100, 9000.0)
    advice.check_channels(found, client_limit, capacity)
    assert found.ok
