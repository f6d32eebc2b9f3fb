"""Stop notices in the task server's cache (ns.cancel -> WorkBatch.cancel -> agents)."""

from __future__ import annotations

from taskfleet.protocol.messages import RunTask, WorkBatch, WorkRef
from taskfleet.taskserver.work_cache import HANDOFF_RETRY_S, STOP_TRIES, WorkCache


def work(*refs: tuple[int, int]) -> WorkBatch:
    return WorkBatch(
        work=[WorkRef(computer_id=c, instance_id=i, run_id=7) for c, i in refs],
        runs=[RunTask(run_id=7, task_type="run-script", params={}, timeout_s=9)],
    )


def cancel(*refs: tuple[int, int]) -> WorkBatch:
    return WorkBatch(
        work=[], runs=[], cancel=[WorkRef(computer_id=c, instance_id=i, run_id=7) for c, i in refs]
    )


def test_a_canceled_instance_never_handed_out_is_dropped_silently() -> None:
    # Given work held for computer 1, not handed out yet
    cache = WorkCache()
    cache.add(work((1, 101)))
    # When its cancel arrives
    tickle = cache.add(cancel((1, 101)))
    # Then it is gone, nobody is tickled, and the agent is told nothing
    assert tickle == set() and not cache.has_work(1, now=100.0)
    assert cache.take(1, now=100.0) == [] and cache.take_cancels(1, now=100.0) == []
    assert cache.waiting == 0


def test_the_agent_holding_a_canceled_instance_is_told_until_it_reports() -> None:
    # Given work computer 1's agent took (and maybe runs), and one the cache never had
    cache = WorkCache()
    cache.add(work((1, 101)))
    assert len(cache.take(1, now=100.0)) == 1
    # When both are canceled
    tickle = cache.add(cancel((1, 101), (2, 202)))
    # Then both agents are tickled and told, once per hand-out delay
    assert tickle == {1, 2}
    assert cache.has_work(1, now=100.0)
    assert cache.take_cancels(1, now=100.0) == [101]
    assert cache.take(1, now=100.0) == []  # the work itself is never handed out again
    assert not cache.has_work(1, now=101.0) and cache.take_cancels(1, now=101.0) == []
    assert cache.take_cancels(1, now=100.0 + HANDOFF_RETRY_S) == [101]
    # until the agent reports the instance ended
    cache.stopped(1, [101])
    assert cache.take_cancels(1, now=1000.0) == [] and not cache.has_work(1, now=1000.0)
    # and an agent that never reports is told at most STOP_TRIES times
    told = [cache.take_cancels(2, now=100.0 + n * HANDOFF_RETRY_S) for n in range(STOP_TRIES + 2)]
    assert told.count([202]) == STOP_TRIES
