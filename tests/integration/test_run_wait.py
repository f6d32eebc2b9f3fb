"""Following a run by long poll (GET /api/runs/{id}/wait), as 'taskfleet run --wait' does."""

from __future__ import annotations

import time

import pytest

from tests.fleet import ApiError, Fleet


def test_the_wait_answers_when_the_counts_change_not_at_its_timeout(fleet: Fleet) -> None:
    # Given an agent running a task that takes two seconds
    fleet.start_ts("ts-1")
    fleet.apply_policy("Lab", "pc-*", ["ts-1"])
    fleet.start_agent("pc-1")
    fleet.wait_assigned(["pc-1"])
    fleet.create_task("nap", "sleep 2")
    run_id = fleet.run("nap", ["pc-1"])
    # A follower without a version gets the counts at once, with their version
    first = fleet.api.get(f"/api/runs/{run_id}/wait", params={"timeout": 30})
    assert first["id"] == run_id and first["version"] and "instances" in first

    # When it follows, passing back each version, until the run is done
    replies = [first]
    while not replies[-1]["done"]:
        asked = time.monotonic()
        reply = fleet.api.get(
            f"/api/runs/{run_id}/wait", params={"since": replies[-1]["version"], "timeout": 30}
        )
        reply["took"] = time.monotonic() - asked
        replies.append(reply)
        assert len(replies) < 10

    # Then each reply came with new counts, none by running out its 30 s
    assert [r["version"] for r in replies] == list(dict.fromkeys(r["version"] for r in replies))
    assert all(r["took"] < 10 for r in replies[1:]), replies
    assert replies[-1]["counts"] == {"Succeeded": 1}
    # and a done run is answered at once whatever the version
    started = time.monotonic()
    again = fleet.api.get(
        f"/api/runs/{run_id}/wait", params={"since": replies[-1]["version"], "timeout": 30}
    )
    assert again["version"] == replies[-1]["version"] and time.monotonic() - started < 2


def test_an_unchanged_run_is_answered_after_the_timeout(fleet: Fleet) -> None:
    # Given a run on a computer that is offline (never started), so nothing changes
    fleet.start_ts("ts-1")
    fleet.apply_policy("Lab", "pc-*", ["ts-1"])
    agent = fleet.start_agent("pc-1")
    fleet.wait_assigned(["pc-1"])
    fleet.launcher.stop(agent)
    fleet.create_task("hi", "echo hi")
    run_id = fleet.run("hi", ["pc-1"])
    version = fleet.api.get(f"/api/runs/{run_id}/wait", params={"timeout": 0})["version"]

    # When a follower waits 1.5 s with that version
    started = time.monotonic()
    reply = fleet.api.get(f"/api/runs/{run_id}/wait", params={"since": version, "timeout": 1.5})

    # Then it is answered after about that, with the same counts
    assert 1.4 <= time.monotonic() - started < 5
    assert reply["version"] == version and reply["counts"] == {"Pending": 1}


BAD = [
    ("/api/runs/999999/wait", {}, 404),
    ("/api/runs/0/wait", {}, 404),
    ("/api/runs/1/wait", {"timeout": "61"}, 400),
    ("/api/runs/1/wait", {"timeout": "-1"}, 400),
    ("/api/runs/1/wait", {"timeout": "nan"}, 400),
    ("/api/runs/1/wait", {"since": "x" * 65}, 400),
    ("/api/runs/abc/wait", {}, 400),
]


def test_bad_wait_requests_get_a_clear_4xx(fleet: Fleet, subtests: pytest.Subtests) -> None:
    for path, params, status in BAD:
        with subtests.test(path=path, params=params):
            with pytest.raises(ApiError) as refused:
                fleet.api.get(path, params=params)
            assert refused.value.status == status and refused.value.body["message"]
