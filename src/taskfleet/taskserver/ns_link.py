"""The task server's connection to the NS: registration, identity, and every call it makes."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

from taskfleet.agent import facts as local_facts
from taskfleet.errors import InvalidInput, TaskfleetError
from taskfleet.protocol import transport
from taskfleet.protocol.calls import call
from taskfleet.protocol.messages import (
    AgentMap,
    Events,
    Heartbeat,
    HeartbeatReply,
    Registered,
    Registration,
    StatusAck,
    StatusEvent,
    WorkBatch,
    WorkRequest,
    event_json,
    from_json,
    to_json,
)
from taskfleet.taskserver.metrics import TaskServerMetrics
from taskfleet.taskserver.settings import TaskServerSettings

log = logging.getLogger("taskfleet.taskserver")
IDENTITY_FILE = "identity.json"
LOOKUPS = 4  # agent lookups in flight at once; more wait their turn here, not in a pool


class NSLink:
    def __init__(
        self, settings: TaskServerSettings, metrics: TaskServerMetrics | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else TaskServerMetrics()
        self.identity_path = settings.data_dir / IDENTITY_FILE
        self.credential: transport.Credential | None = None
        self.name = ""
        self.hardware_id = local_facts.hardware_id(settings.data_dir)
        # Three clients, so that control traffic never queues behind bulk traffic: a
        # heartbeat must get through while a large work fetch or status batch is in
        # flight. Every loop that uses them is single-flight (agent lookups are capped
        # by a semaphore), so no request ever waits inside a pool.
        self._client = transport.client(settings.ns_url, max_connections=LOOKUPS + 2)
        self._events = transport.client(settings.ns_url, max_connections=2)
        self._bulk = transport.client(settings.ns_url, timeout=120.0, max_connections=4)
        self._lookups = asyncio.Semaphore(LOOKUPS)
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.identity_path.read_text())
        except FileNotFoundError:
            return
        except ValueError:
            log.warning("%s is unreadable; registering again", self.identity_path)
            return
        self.credential = transport.parse_credential(data.get("credential", ""))
        self.name = data.get("name", "")
        self._use_credential()

    def _use_credential(self) -> None:
        if self.credential is not None:
            for client in (self._client, self._events, self._bulk):
                client.headers.update(self.credential.header)

    async def register(self) -> Registered:
        if not self.settings.token:
            raise InvalidInput(
                "this task server has no credential yet: start it with --token TOKEN "
                "(create one with 'taskfleet token create --kind taskserver')"
            )
        facts = local_facts.gather(
            self.settings.name or None, self.hardware_id, self.settings.addresses or None
        )
        body = Registration(
            token=self.settings.token,
            facts=facts,
            url=self.settings.url,
            client_limit=self.settings.client_limit,
            heartbeat_period_s=self.settings.heartbeat_period_s,
        )
        reply = from_json(
            Registered,
            await self._call(self._client, "POST", "/api/ts/register", json=to_json(body)),
        )
        self.credential = transport.parse_credential(reply.credential)
        self.name = reply.name
        self._use_credential()
        _write_private(
            self.identity_path,
            {
                "credential": reply.credential,
                "name": reply.name,
                "task_server_id": reply.task_server_id,
            },
        )
        return reply

    @property
    def registered(self) -> bool:
        return self.credential is not None

    @property
    def task_server_id(self) -> int | None:
        return self.credential.principal if self.credential else None

    async def heartbeat(self, body: Heartbeat) -> HeartbeatReply:
        data = await self._call(self._client, "POST", "/api/ts/heartbeat", json=to_json(body))
        return from_json(HeartbeatReply, data)

    async def events(self, since: int, wait: float) -> Events:
        data = await self._call(
            self._events,
            "GET",
            "/api/ts/events",
            params={"since": since, "wait": wait},
            timeout=wait + 15,
        )
        return from_json(Events, data)

    async def agents(self, computer_id: int | None = None) -> AgentMap:
        path = "/api/ts/agents" if computer_id is None else f"/api/ts/agents/{computer_id}"
        async with self._lookups:
            return from_json(AgentMap, await self._call(self._client, "GET", path, timeout=60))

    async def work(self, limit: int, known_runs: list[int]) -> WorkBatch:
        body = WorkRequest(limit=limit, known_runs=known_runs)
        data = await self._call(self._bulk, "POST", "/api/ts/work", json=to_json(body))
        return from_json(WorkBatch, data)

    async def status(self, events: list[StatusEvent]) -> StatusAck:
        data = await self._call(
            self._bulk, "POST", "/api/ts/status", json={"events": [event_json(e) for e in events]}
        )
        return from_json(StatusAck, data)

    async def _call(self, client: Any, method: str, path: str, **kwargs: Any) -> Any:
        try:
            return await call(client, method, path, **kwargs)
        except TaskfleetError as exc:
            self.metrics.link_error(path, exc)  # /metrics: NS link errors by call
            raise

    async def close(self) -> None:
        for client in (self._client, self._events, self._bulk):
            await client.aclose()


def _write_private(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
