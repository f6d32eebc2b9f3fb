"""Work a task server fetched from the NS in batches, held until its agents take it (R6, R8).

The NS hands a task server many computers' work in one exchange, and each
run's task once (``RunTask``); an agent's poll is then answered from here,
without a round trip to the NS. State:

- ``_runs``: run id -> the run's task, shared by every computer of the run.
  Runs no waiting work refers to are dropped once there are more than
  ``MAX_RUNS``.
- ``_waiting``: computer id -> instance id -> (run id, when it was handed out).
  A handed item stays until a status for that instance passes through this
  task server (the agent has it): if the agent's poll reply was lost, the item
  is handed out again after ``HANDOFF_RETRY_S`` (the agent's ledger makes a
  second copy harmless). If the task server restarts, the NS offers the
  instances again after its redelivery delay.
- ``_stopping``: computer id -> instance id -> (when the stop notice was handed to the
  agent, how often): instances canceled (or expired) that the agent may hold. Handed
  out in the channel or poll reply's ``cancel`` like work, again after
  ``HANDOFF_RETRY_S``, until the agent reports the instance ended, at most
  ``STOP_TRIES`` times (the NS ends it anyway after its grace: ns.expiry).
  A canceled instance still waiting here, never handed out, is just dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from taskfleet.protocol.messages import RunTask, WorkBatch, WorkItem, WorkRef

log = logging.getLogger("taskfleet.taskserver")
HANDOFF_RETRY_S = 30.0
MAX_RUNS = 1000
NEVER = 0.0
STOP_TRIES = 5


class WorkCache:
    def __init__(self) -> None:
        self._runs: dict[int, RunTask] = {}
        self._waiting: dict[int, dict[int, tuple[int, float]]] = {}
        self._stopping: dict[int, dict[int, tuple[float, int]]] = {}

    def known_runs(self) -> list[int]:
        return list(self._runs)

    def add(self, batch: WorkBatch) -> set[int]:
        """Hold a batch from the NS; the computers to tickle (new, or never handed out yet)."""
        for task in batch.runs:
            self._runs[task.run_id] = task
        tickle: set[int] = set()
        for ref in batch.work:
            if ref.run_id not in self._runs:
                # The NS left out a run we no longer hold: it offers the instance again.
                log.warning("work for run %s arrived without its task; skipped", ref.run_id)
                continue
            held = self._waiting.setdefault(ref.computer_id, {})
            if held.get(ref.instance_id, (0, NEVER))[1] == NEVER:
                # New, or offered again by the NS before any agent took it: a tickle
                # may have been lost, so tickle again.
                held[ref.instance_id] = (ref.run_id, NEVER)
                tickle.add(ref.computer_id)
        tickle |= self._withdraw(batch.cancel)
        self._prune_runs()
        return tickle

    def _withdraw(self, refs: Iterable[WorkRef]) -> set[int]:
        """Drop canceled instances no agent was handed; the others' agents are told to
        stop them (``take_cancels``): the computers to tickle."""
        tickle: set[int] = set()
        for ref in refs:
            held = self._waiting.get(ref.computer_id, {})
            handed = held.pop(ref.instance_id, None)
            if not held:
                self._waiting.pop(ref.computer_id, None)
            if handed is not None and handed[1] == NEVER:
                continue  # never left this task server: gone, nobody runs it
            self._stopping.setdefault(ref.computer_id, {})[ref.instance_id] = (NEVER, 0)
            tickle.add(ref.computer_id)
        return tickle

    def take_cancels(self, computer_id: int, now: float) -> list[int]:
        """Instances the computer's agent must stop, marked as told at ``now``."""
        stopping = self._stopping.get(computer_id)
        if not stopping:
            return []
        due = []
        for instance_id, (told, tries) in sorted(stopping.items()):
            if not _due(told, now):
                continue
            if tries >= STOP_TRIES:
                del stopping[instance_id]
                continue
            stopping[instance_id] = (now, tries + 1)
            due.append(instance_id)
        if not stopping:
            del self._stopping[computer_id]
        return due

    def stopped(self, computer_id: int, instance_ids: Iterable[int]) -> None:
        """The agent reported these instances ended: no more stop notices for them."""
        stopping = self._stopping.get(computer_id)
        if stopping is None:
            return
        for instance_id in instance_ids:
            stopping.pop(instance_id, None)
        if not stopping:
            del self._stopping[computer_id]

    def has_work(self, computer_id: int, now: float) -> bool:
        """Work or a stop notice is due for this computer."""
        stopping = self._stopping.get(computer_id)
        if stopping and any(_due(told, now) for told, _ in stopping.values()):
            return True
        held = self._waiting.get(computer_id)
        if not held:
            return False
        return any(_due(handed, now) for _, handed in held.values())

    def take(self, computer_id: int, now: float) -> list[WorkItem]:
        """The computer's work that is due, marked as handed out at ``now``."""
        held = self._waiting.get(computer_id)
        if not held:
            return []
        items = []
        for instance_id, (run_id, handed) in sorted(held.items()):
            task = self._runs.get(run_id)
            if task is None or not _due(handed, now):
                continue
            held[instance_id] = (run_id, now)
            items.append(
                WorkItem(
                    instance_id=instance_id,
                    run_id=run_id,
                    task_type=task.task_type,
                    params=dict(task.params),
                    timeout_s=task.timeout_s,
                    live=task.live,
                    param_values=task.param_values,
                    secret_params=task.secret_params,
                    retries=task.retries,
                    retry_backoff_s=task.retry_backoff_s,
                )
            )
        return items

    def settled(self, computer_id: int, instance_ids: Iterable[int]) -> None:
        """The agent reported on these instances: it has them."""
        held = self._waiting.get(computer_id)
        if held is None:
            return
        for instance_id in instance_ids:
            held.pop(instance_id, None)
        if not held:
            del self._waiting[computer_id]

    def keep_only(self, computer_ids: Iterable[int]) -> None:
        """Drop the work of computers no longer assigned here; the NS offers it elsewhere."""
        keep = set(computer_ids)
        for computer_id in [c for c in self._waiting if c not in keep]:
            del self._waiting[computer_id]
        for computer_id in [c for c in self._stopping if c not in keep]:
            del self._stopping[computer_id]

    def clear(self) -> None:
        self._waiting.clear()
        self._stopping.clear()
        self._runs.clear()

    @property
    def waiting(self) -> int:
        """Instances held for agents that have not reported on them yet."""
        return sum(len(held) for held in self._waiting.values())

    def _prune_runs(self) -> None:
        if len(self._runs) <= MAX_RUNS:
            return
        used = {run_id for held in self._waiting.values() for run_id, _ in held.values()}
        for run_id in [r for r in self._runs if r not in used]:
            del self._runs[run_id]


def _due(handed: float, now: float) -> bool:
    return handed == NEVER or now - handed >= HANDOFF_RETRY_S
