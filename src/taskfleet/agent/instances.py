"""The instances this agent was handed: taken once, run, canceled, reported (R8).

State: ``ledger`` says, on disk, what became of each instance handed to this agent; an
instance it has a state for is never taken again, so none runs twice, across restarts
too. ``stopper`` knows the scripts running now and the instances the NS canceled
(agent.cancel). ``running`` holds an asyncio task per instance being run (the agent
cancels them when it stops); ``resuming`` the client
jobs found paused by their own restart step when the agent started (``recover``), run
on (``resume``) once the agent has its task server again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from taskfleet.agent import interrupted, job_resume
from taskfleet.agent.cancel import Stopper
from taskfleet.agent.ledger import Ledger
from taskfleet.agent.outcome import Outcome
from taskfleet.agent.status import StatusSender
from taskfleet.agent.tasks import Tasks
from taskfleet.protocol.messages import InstanceState, TaskType, WorkItem, cancel_ids

log = logging.getLogger("taskfleet.agent")


class Instances:
    def __init__(
        self,
        ledger: Ledger,
        stopper: Stopper,
        status: StatusSender,
        tasks: Tasks,
        restart: Callable[[], Awaitable[None]],
        stopping: asyncio.Event,  # set: the agent stops or restarts, takes no new work
    ) -> None:
        self.ledger = ledger
        self.stopper = stopper
        self.status = status
        self.tasks = tasks
        self.restart = restart
        self.stopping = stopping
        self.running: set[asyncio.Task[None]] = set()
        self.resuming: list[job_resume.Saved] = []  # client jobs paused for a restart

    # --- at start: what a restart cut off ------------------------------------------------

    def recover(self) -> None:
        """Instances cut off by a restart: not started yet may run; started ones are failed,
        but for client jobs that their own restart step paused (agent.job_resume)."""
        for instance_id, state in self.ledger.unfinished().items():
            saved = job_resume.load(self.ledger.directory, instance_id)
            if state == InstanceState.RUNNING and saved is not None:
                self.resuming.append(saved)  # its own restart step paused it: go on after it
            elif state == InstanceState.RUNNING:
                # Kill what is left of its script first (agent.interrupted), then report.
                output = interrupted.stop_leftovers(self.ledger.directory, instance_id)
                self.ledger.record(instance_id, InstanceState.FAILED)
                self.status.report(
                    instance_id,
                    InstanceState.FAILED,
                    None,
                    output,
                    live=True,
                    reason=interrupted.REASON,
                )
            else:
                # Never started: forget it so the NS's redelivery runs it once.
                (self.ledger.directory / str(instance_id)).unlink(missing_ok=True)
        self.ledger.prune()

    def resume(self) -> None:
        for saved in self.resuming:
            self._start(self._resume_job(saved))
        self.resuming = []

    async def _resume_job(self, saved: job_resume.Saved) -> None:
        log.info("instance %s: the job goes on after its restart", saved.item.instance_id)
        self._finish(saved.item, await self.tasks.job(saved.item, saved))

    # --- work and cancels from the task server (agent.polling) ---------------------------

    def take(self, work: list[WorkItem], cancel: Any) -> None:
        """A poll's or the channel's reply: its work items, then its cancel list."""
        for item in work:
            self._accept(item)
        self._cancel(cancel)

    def _accept(self, item: WorkItem) -> None:
        if self.ledger.state(item.instance_id) is not None:
            return  # already accepted once: never run twice (R8)
        if self.stopping.is_set():
            return  # restarting: it would be cut off; the task server hands it out again
        self._emit(item, InstanceState.RECEIVED)
        self._start(self._execute(item))

    def _cancel(self, instance_ids: Any) -> None:
        """Stop the instances the NS canceled (a channel or poll reply's ``cancel``)."""
        try:
            ids = cancel_ids(instance_ids)
        except ValueError as exc:  # a malformed list: ignored, the rest of the reply taken
            log.warning("ignored the reply's cancel list: %s", exc)
            return
        for instance_id in ids:
            try:
                self._cancel_one(instance_id)
            except OSError as exc:  # the ledger's disk: the NS's notice comes again
                log.error("instance %s: cancel failed: %s", instance_id, exc)

    def _cancel_one(self, instance_id: int) -> None:
        state = self.ledger.state(instance_id)
        if state is None:  # never had it: it must never start here (R8)
            self.ledger.record(instance_id, InstanceState.CANCELED)
            self.status.report(
                instance_id,
                InstanceState.CANCELED,
                None,
                "taskfleet: canceled before it started",
                live=True,
                reason="canceled",
            )
        elif not InstanceState(state).terminal:
            self.stopper.cancel(instance_id)

    # --- running and reporting -----------------------------------------------------------

    def _start(self, run: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(run)
        self.running.add(task)
        task.add_done_callback(self.running.discard)

    async def _execute(self, item: WorkItem) -> None:
        self._emit(item, InstanceState.RUNNING)
        if item.task_type == TaskType.RESTART_AGENT:
            self._emit(item, InstanceState.SUCCEEDED, 0, "taskfleet: agent restarting")
            return await self.restart()
        self._finish(item, await self.tasks.run(item, lambda o: self._finish_now(item, o)))

    def _emit(
        self,
        item: WorkItem,
        state: str,
        rc: int | None = None,
        output: str | None = None,
        steps: list[dict[str, Any]] | None = None,  # a client job's (protocol.step_records)
    ) -> None:
        reason = None
        if InstanceState(state).terminal:  # canceled meanwhile: say so (agent.cancel)
            state, output, reason = self.stopper.outcome_of(item.instance_id, state, output)
        self.ledger.record(item.instance_id, state)
        live = item.live or reason is not None  # a cancel is reported at once
        self.status.report(item.instance_id, state, rc, output, live, reason, steps)
        if InstanceState(state).terminal:
            self.stopper.done(item.instance_id)

    def _finish(self, item: WorkItem, result: Outcome | None) -> None:
        if result is not None:  # (None: reported already)
            self._emit(item, result.state, result.return_code, result.output, result.steps)

    async def _finish_now(self, item: WorkItem, result: Outcome) -> None:
        """Report and send at once: what comes next may stop this agent (a power off)."""
        self._finish(item, result)
        await self.status.send_soon()
