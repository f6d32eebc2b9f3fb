"""The agent's life: enrol, get a task server, poll, listen, run, report (R4, R5, R6, R8, R11).

``Agent`` puts the parts together and runs their loops until it stops or restarts:
- agent.ns_link: the NS: enrolment, certificate, which task server (R3);
- agent.task_server: calls to that task server, failover after three failed (R4);
- agent.polling: the poll, every Task Request Interval (jittered) or at once after a
  tickle on the notification channel, a long poll that returns when there is news (R6);
- agent.instances: the instances handed to the agent, run once (R8), and at start the
  ones a restart cut off; agent.tasks: what each type of task does;
- agent.status: status changes, spooled until acknowledged (R8), sent every Send Status
  Interval or at once for live runs (R5).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

from taskfleet.agent import inventory
from taskfleet.agent.cancel import Stopper
from taskfleet.agent.clients import Retired
from taskfleet.agent.instances import Instances
from taskfleet.agent.ledger import Ledger
from taskfleet.agent.ns_link import NsLink
from taskfleet.agent.options import AgentOptions
from taskfleet.agent.polling import Polling
from taskfleet.agent.status import StatusSender
from taskfleet.agent.task_server import TaskServer
from taskfleet.agent.tasks import Tasks
from taskfleet.protocol.spool import Spool

__all__ = ["Agent", "AgentOptions"]


class Agent:
    def __init__(self, options: AgentOptions) -> None:
        self.options = options
        state = options.state_dir
        state.mkdir(parents=True, exist_ok=True)
        self._retired = Retired()
        self.ns = NsLink(options, self._retired)
        self.task_server = TaskServer(self.ns, self._retired, self._assigned)
        self.status = StatusSender(Spool(state / "spool"), self.task_server)
        self.ledger = Ledger(state / "instances")
        stopper = Stopper(self.ledger.directory)
        # Set by stop() or a restart-agent task: run() ends, and no new work is taken.
        self._stop = asyncio.Event()
        self.restart_requested = False
        self.tasks = Tasks(
            options, self.ns, self.task_server, self.status, self.ledger, stopper, self._restart
        )
        self.instances = Instances(
            self.ledger, stopper, self.status, self.tasks, self._restart, self._stop
        )
        self.polling = Polling(self.task_server, self.instances.take, options.channel_wait_s)

    def _assigned(self) -> None:
        # A new task server: ask it for work, and send it the status kept meanwhile, now.
        self.polling.wake.set()
        self.status.flush.set()

    def stop(self) -> None:
        self._stop.set()

    async def _restart(self) -> None:
        """R10: a restart-agent task. The process restarts itself (see agent.cli), and
        so forgets its task server; the status so far is sent first."""
        await self.status.send_soon()
        self.restart_requested = True
        self._stop.set()

    async def run(self) -> None:
        """Run until ``stop()`` or a restart-agent task; see ``restart_requested``."""
        window = self.options.startup_window_s
        if window > 0:
            # R11: agents that start together spread their first contact.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), random.uniform(0, window))
        tasks: list[asyncio.Task[Any]] = []
        try:
            if self._stop.is_set():
                return
            self.instances.recover()
            assigner = asyncio.create_task(self.task_server.assign())
            stopper = asyncio.create_task(self._stop.wait())
            tasks = [assigner, stopper]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if self._stop.is_set():
                return
            assigner.result()
            self.instances.resume()
            loops = [
                asyncio.create_task(self.polling.channel_loop()),
                asyncio.create_task(self.polling.poll_loop()),
                asyncio.create_task(self.status.loop()),
                asyncio.create_task(self.ns.certificate_loop()),
                asyncio.create_task(
                    inventory.loop(
                        self.ns.inventory_due,
                        lambda: self.task_server.settings.inventory_interval_s,
                        self.ns.send_inventory,
                    )
                ),
            ]
            tasks += loops
            done, _ = await asyncio.wait([*loops, stopper], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopper and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            running = list(self.instances.running)
            for task in [*tasks, *running]:
                task.cancel()
            await asyncio.gather(*tasks, *running, return_exceptions=True)
            self._retired.cancel()
            await self.ns.client.aclose()
            if self.task_server.client is not None:
                await self.task_server.client.aclose()
