"""What each type of task does on this computer, to the ``Outcome`` the agent reports.

A task runs on its own (``run``: one instance) or as a step of a client job (``step``,
called by ``agent.client_jobs`` for each step of ``job``). Restart agent, on its own,
is the agent's to do (agent.instances); as a step it pauses the job, which goes on in
the next agent (agent.job_resume), like a power-control step that restarts the computer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from taskfleet.agent import (
    client_jobs,
    copy_file,
    inventory,
    job_resume,
    outcome,
    power,
    retries,
    scripts,
)
from taskfleet.agent.cancel import Stopper
from taskfleet.agent.ledger import Ledger
from taskfleet.agent.ns_link import NsLink
from taskfleet.agent.options import AgentOptions
from taskfleet.agent.outcome import Outcome
from taskfleet.agent.status import StatusSender
from taskfleet.agent.task_server import TaskServer
from taskfleet.protocol.fields import MAX_OUTPUT_LIMIT
from taskfleet.protocol.jobs import JOB_TASK_TYPE
from taskfleet.protocol.messages import InstanceState, TaskType, WorkItem

# Reports an outcome and sends it at once: what comes next may stop this agent.
FinishNow = Callable[[Outcome], Awaitable[None]]


@dataclass
class Tasks:
    # What the tasks use; the state is theirs (the agent's parts, put together in agent.service).
    options: AgentOptions
    ns: NsLink  # facts, inventory
    task_server: TaskServer  # a copy-file task's file, the agent configuration
    status: StatusSender  # sent before a power-control step acts
    ledger: Ledger  # a client job's progress is kept beside it (agent.job_resume)
    stopper: Stopper  # canceled instances; the scripts running now
    restart: Callable[[], Awaitable[None]]  # the agent's (R10)

    def _power_test_file(self) -> Path | None:
        return power.recording_file(self.options.power_test_file)

    async def run(self, item: WorkItem, finish_now: FinishNow) -> Outcome | None:
        """A task on its own; None when it reported its outcome already (power control)."""
        if item.task_type == TaskType.POWER_CONTROL:
            return await power.run(item.params, self._power_test_file(), finish_now)
        if item.task_type == JOB_TASK_TYPE:  # a client job: its steps, here
            return await self.job(item)
        return await self.step(item)

    async def job(self, item: WorkItem, saved: job_resume.Saved | None = None) -> Outcome:
        """A client job from its start, or from where its restart step paused it."""
        directory = self.ledger.directory
        test_mode = self._power_test_file() is not None
        resume = None
        if saved is not None:
            canceled = lambda: self.stopper.canceled(item.instance_id)  # noqa: E731
            resume = await job_resume.resumed(directory, saved, canceled)
        return await client_jobs.run(
            item,
            self.step,
            lambda paused: job_resume.keep(directory, item, paused, test_mode),
            resume,
        )

    async def step(self, item: WorkItem) -> Outcome:
        """A task that ends in an ``Outcome``: on its own, or as a client job's step."""
        if item.task_type == TaskType.COPY_FILE:
            return await copy_file.run(item, self.task_server.client)
        if item.task_type == TaskType.INVENTORY:
            return await inventory.run_task(self.ns.send_inventory)
        if item.task_type == TaskType.RESTART_AGENT:  # a client job's step (agent.job_resume)
            return await job_resume.restart_agent_step(self.restart)
        if item.task_type == TaskType.POWER_CONTROL:  # likewise; alone, see run
            return await job_resume.power_step(
                item,
                self._power_test_file(),
                self.status.send_soon,  # bounded, and a task server away does not stop it
                lambda: self.stopper.canceled(item.instance_id),
            )
        if item.task_type != TaskType.RUN_SCRIPT:
            return outcome.failed(f"this agent cannot run a {item.task_type!r} task here")
        return await self._script(item)

    async def _script(self, item: WorkItem) -> Outcome:
        # Placeholders, options and secret masking: agent.scripts; retries and back-off
        # within the timeout: agent.retries; the process recorded, to stop it: agent.cancel.
        async def attempt(timeout_s: float) -> Outcome:
            if self.stopper.canceled(item.instance_id):
                return Outcome(InstanceState.CANCELED, None, "")
            assignment = self.task_server.assignment
            settings = self.task_server.settings
            try:
                return await scripts.run(
                    item,
                    self.ns.facts(),
                    env={
                        "TASKFLEET_TASK_SERVER": assignment.task_server_name if assignment else "",
                        "TASKFLEET_COMPUTER": self.options.name or "",
                        "TASKFLEET_RUN": str(item.run_id),
                    },
                    output_limit=min(max(0, settings.output_limit_bytes), MAX_OUTPUT_LIMIT),
                    timeout_s=timeout_s,
                    started=self.stopper.started(item.instance_id),
                )
            finally:
                self.stopper.ended(item.instance_id)

        return await retries.run(
            item.retries,
            item.retry_backoff_s,
            item.timeout_s,
            attempt,
            lambda: self.stopper.canceled(item.instance_id),
        )
