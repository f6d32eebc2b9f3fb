"""The task server's cache of batched work: tickles, hand-outs, retries and the run's task once."""

from __future__ import annotations

from taskfleet.protocol.messages import RunTask, WorkBatch, WorkRef
from taskfleet.taskserver.work_cache import HANDOFF_RETRY_S, MAX_RUNS, WorkCache


def batch(refs: list[tuple[int, int, int]], runs: list[int]) -> WorkBatch:
    return WorkBatch(
        work=[WorkRef(computer_id=c, instance_id=i, run_id=r) for c, i, r in refs],
        runs=[
            RunTask(run_id=r, task_type="run-script", params={"script": "true"}, timeout_s=9)
            for r in runs
        ],
    )


def test_a_run_shared_by_many_computers_is_held_once_and_each_computer_is_tickled() -> None:
    # Given one batch: run 7 for three computers, its task sent once
    cache = WorkCache()
    tickle = cache.add(batch([(1, 101, 7), (2, 102, 7), (3, 103, 7)], runs=[7]))
    # Then all three are tickled, and each gets its own instance with the run's task
    assert tickle == {1, 2, 3}
    assert cache.known_runs() == [7]
    items = cache.take(2, now=100.0)
    assert [(i.instance_id, i.run_id, i.params, i.timeout_s) for i in items] == [
        (102, 7, {"script": "true"}, 9)
    ]


def test_handed_work_is_offered_again_only_after_the_retry_delay_until_status_arrives() -> None:
    cache = WorkCache()
    cache.add(batch([(1, 101, 7)], runs=[7]))
    # When the agent's poll takes it
    assert len(cache.take(1, now=100.0)) == 1
    # Then it is not handed out again at once (the channel would spin) ...
    assert not cache.has_work(1, now=101.0)
    assert cache.take(1, now=101.0) == []
    # ... but it is if the agent never reported (its poll reply was lost)
    assert cache.has_work(1, now=100.0 + HANDOFF_RETRY_S)
    # And once the agent's status passes through, it is gone for good
    cache.settled(1, [101])
    assert not cache.has_work(1, now=1e9)
    assert cache.waiting == 0


def test_work_offered_again_by_the_ns_tickles_only_if_never_handed_out() -> None:
    cache = WorkCache()
    cache.add(batch([(1, 101, 7), (2, 102, 7)], runs=[7]))
    cache.take(1, now=100.0)
    # When the NS offers both again (its redelivery delay passed), without the task
    again = cache.add(batch([(1, 101, 7), (2, 102, 7)], runs=[]))
    # Then computer 2 (never took it: a tickle may be lost) is tickled again, 1 is not
    assert again == {2}


def test_work_whose_run_task_is_unknown_is_skipped_not_handed_out_empty() -> None:
    cache = WorkCache()
    assert cache.add(batch([(1, 101, 8)], runs=[])) == set()
    assert cache.take(1, now=0.0) == []


def test_runs_no_waiting_work_refers_to_are_dropped_past_the_limit() -> None:
    cache = WorkCache()
    cache.add(batch([(1, 1, 1)], runs=[1]))
    for run in range(2, MAX_RUNS + 3):
        cache.add(batch([], runs=[run]))
    # Then past MAX_RUNS the runs without waiting work were dropped; run 1 has work: kept
    assert cache.known_runs() == [1, MAX_RUNS + 2]


def test_computers_no_longer_assigned_here_lose_their_waiting_work() -> None:
    cache = WorkCache()
    cache.add(batch([(1, 101, 7), (2, 102, 7)], runs=[7]))
    cache.keep_only([2])
    assert not cache.has_work(1, now=0.0)
    assert cache.has_work(2, now=0.0)
