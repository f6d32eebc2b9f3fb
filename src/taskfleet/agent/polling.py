"""Asking the task server for work: the poll, and the notification channel (R5, R6).

The poll asks every Task Request Interval (jittered), or at once when ``wake`` is set:
by a tickle on the channel, or when the agent gets a task server. The channel is a long
poll that the task server answers when there is news: work or cancels, carried in its
reply, or a bare tickle that wakes the poll. A lost tickle only delays work until the
next poll. Both hand what they got to ``take`` (agent.instances).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from taskfleet.agent.jitter import jittered
from taskfleet.agent.task_server import TaskServer
from taskfleet.errors import Busy, TaskfleetError
from taskfleet.protocol.messages import ChannelReply, PollReply, WorkItem, from_json

log = logging.getLogger("taskfleet.agent")

# What to do with a reply's work items and its list of canceled instances.
Take = Callable[[list[WorkItem], Any], None]


class Polling:
    def __init__(self, task_server: TaskServer, take: Take, channel_wait_s: float) -> None:
        self.task_server = task_server
        self.take = take
        self.channel_wait_s = channel_wait_s
        self.wake = asyncio.Event()

    async def channel_loop(self) -> None:
        while True:
            try:
                data = await self.task_server.call(
                    "GET",
                    "/agent/channel",
                    params={"wait": self.channel_wait_s},
                    timeout=self.channel_wait_s + 15,
                )
                reply = from_json(ChannelReply, data or {"tickle": False})
                self.take(reply.work, reply.cancel)
                if reply.tickle and not reply.work:
                    self.wake.set()
            except Busy as exc:
                # Full or stopping (503, Retry-After, jittered by the server): no failed
                # attempt (R4), the server is up; polls go on meanwhile.
                await asyncio.sleep(exc.retry_after_s or jittered(30.0))
            except (TaskfleetError, ValueError, TypeError) as exc:  # also a malformed reply
                log.debug("notification channel failed: %s", exc)
                await asyncio.sleep(jittered(2.0))

    async def poll_loop(self) -> None:
        while True:
            try:
                data = await self.task_server.call("GET", "/agent/poll")
                reply = from_json(PollReply, data)
                self.task_server.settings = reply.settings
                self.take(reply.work, reply.cancel)
            except TaskfleetError as exc:
                log.debug("poll failed: %s", exc)
                await asyncio.sleep(jittered(2.0))
                continue
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.wake.wait(), jittered(self.task_server.settings.task_request_interval_s)
                )
