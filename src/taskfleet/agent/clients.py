"""The agent's HTTP clients that were replaced, closed later.

A client to the NS is replaced when the agent's certificate changes (new connections
present the new one); a client to the task server, then too and when the agent is
assigned a task server again. Other loops may still have requests waiting on the old
client: closing it at once would fail them with 'client has been closed'. So it is
closed after ``RETIRE_S``, longer than any request's wait.
"""

from __future__ import annotations

import asyncio

import httpx

RETIRE_S = 120.0


class Retired:
    def __init__(self) -> None:
        self._closing: set[asyncio.Task[None]] = set()  # one a client, until it closes

    def retire(self, client: httpx.AsyncClient | None) -> None:
        """Close ``client`` once the requests other loops have on it are done."""
        if client is None:
            return

        async def close_later() -> None:
            await asyncio.sleep(RETIRE_S)
            await client.aclose()

        task = asyncio.create_task(close_later())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def cancel(self) -> None:
        """The agent stops: its loop ends, and with it these connections."""
        for task in list(self._closing):
            task.cancel()
