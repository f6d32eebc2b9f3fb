"""The task server's connection to the NS: registration, identity, and every call it makes."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from typing import IO, Any

import httpx

from taskfleet.errors import Forbidden, InvalidInput, TaskfleetError
from taskfleet.protocol import facts as local_facts
from taskfleet.protocol import transport
from taskfleet.protocol.calls import call, download
from taskfleet.protocol.messages import (
    AgentMap,
    CABundle,
    Events,
    Heartbeat,
    HeartbeatReply,
    Refusals,
    Registered,
    Registration,
    RevocationList,
    StatusAck,
    StatusEvent,
    WorkBatch,
    WorkRequest,
    event_json,
    from_json,
    to_json,
)
from taskfleet.protocol.private_file import write_private_json
from taskfleet.protocol.trust import NodeTrust
from taskfleet.taskserver.metrics import TaskServerMetrics
from taskfleet.taskserver.settings import TaskServerSettings
from taskfleet.taskserver.tls import use_certificate

log = logging.getLogger("taskfleet.taskserver")
IDENTITY_FILE = "identity.json"
OLD_CLIENTS_CLOSE_S = 120.0  # longer than any request's timeout
LOOKUPS = 4  # agent lookups in flight at once; more wait their turn here, not in a pool


class NSLink:
    def __init__(
        self,
        settings: TaskServerSettings,
        metrics: TaskServerMetrics | None = None,
        server_tls: ssl.SSLContext | None = None,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        # None: the network (unit tests pass an httpx.MockTransport for the NS).
        self.http_transport = http_transport
        # What it trusts and presents (protocol.trust), and the context it serves agents
        # with: a certificate from approval or renewal goes into both.
        self.trust = NodeTrust(
            settings.data_dir,
            settings.ns_url,
            settings.ca_fingerprint,
            settings.insecure_http,
            "taskserver",
        )
        self.server_tls = server_tls
        self.metrics = metrics if metrics is not None else TaskServerMetrics()
        self.identity_path = settings.data_dir / IDENTITY_FILE
        self.credential: transport.Credential | None = None
        self.name = ""
        self.hardware_id = local_facts.hardware_id(settings.data_dir)
        # Three clients, so that control traffic never queues behind bulk traffic: a
        # heartbeat must get through while a large work fetch or status batch is in
        # flight. Every loop that uses them is single-flight (agent lookups are capped
        # by a semaphore), so no request ever waits inside a pool.
        self._closing: set[asyncio.Task[None]] = set()
        self._open_clients()
        self._lookups = asyncio.Semaphore(LOOKUPS)
        self._load()

    def _open_clients(self) -> None:
        url = self.settings.ns_url
        tls = self.trust.context() if self.trust.insecure or self.trust.ca_file.exists() else None
        via = self.http_transport
        self._client = transport.client(url, max_connections=LOOKUPS + 2, tls=tls, transport=via)
        self._events = transport.client(url, max_connections=2, tls=tls, transport=via)
        self._bulk = transport.client(url, timeout=120.0, max_connections=4, tls=tls, transport=via)
        self._use_credential()

    async def start(self) -> None:
        """Trust the NS (the pinned CA bundle) before the first call."""
        if not self.trust.insecure and not self.trust.ca_file.exists():
            await self.trust.bootstrap()
            await self._reopen()

    async def _reopen(self) -> None:
        # New connections present the current certificate; open ones may lack it.
        # The old clients may have requests in flight (an events wait, a status batch):
        # they finish there, and the clients close a while later.
        old = (self._client, self._events, self._bulk)
        self._open_clients()

        async def close_later() -> None:
            await asyncio.sleep(OLD_CLIENTS_CLOSE_S)
            for client in old:
                await client.aclose()

        self._closing.add(task := asyncio.create_task(close_later()))
        task.add_done_callback(self._closing.discard)

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
                "this task server has no credential yet: give it an enrolment token in "
                "--token-file PATH or TASKFLEET_TOKEN "
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
            csr=self.trust.csr(),
        )
        reply = from_json(
            Registered,
            await self._call(self._client, "POST", "/api/ts/register", json=to_json(body)),
        )
        self.credential = transport.parse_credential(reply.credential)
        self.name = reply.name
        self._use_credential()
        write_private_json(
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
        body.certificate_serial = self.trust.serial()
        data = await self._call(self._client, "POST", "/api/ts/heartbeat", json=to_json(body))
        reply = from_json(HeartbeatReply, data)
        if not self.trust.insecure:
            await self._keep_trust(reply)
        return reply

    async def _keep_trust(self, reply: HeartbeatReply) -> None:
        """Take what the heartbeat says changed: the CA bundle, the revocation list, a
        certificate (approval signed one, or it was renewed)."""
        if reply.ca_bundle_id and reply.ca_bundle_id != self.trust.bundle_id():
            bundle = from_json(CABundle, await self._call(self._client, "GET", "/api/ca"))
            self.trust.store_bundle(bundle.bundle)
            if self.server_tls is not None:  # agents' certificates of a new CA, too
                self.server_tls.load_verify_locations(cafile=str(self.trust.ca_file))
        if reply.crl_number != self.trust.crl_number:
            crl = from_json(RevocationList, await self._call(self._client, "GET", "/api/ca/crl"))
            self.trust.store_crl(crl.crl, crl.number)
        if reply.certificate:
            self.trust.store_certificate(reply.certificate)
            if self.server_tls is not None:
                use_certificate(self.server_tls, self.trust)
            await self._reopen()
            log.info("serving with the certificate the NS issued (serial %s)", self.trust.serial())

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

    async def refusals(self, body: Refusals) -> None:
        """What it refused its agents, for the NS's audit log (``taskserver.forbidden``)."""
        await self._call(self._client, "POST", "/api/ts/refusals", json=to_json(body))

    async def fetch_file(self, sha256: str, fh: IO[bytes]) -> None:
        """Stream the NS's copy of a copy-file task's file into ``fh`` (taskserver.file_cache)."""
        try:
            await download(self._bulk, f"/api/ts/files/{sha256}", fh.write, timeout=600)
        except TaskfleetError as exc:
            self.metrics.link_error("/api/ts/files", exc)
            raise

    async def may_fetch(self, computer_id: int, sha256: str) -> bool:
        """Does this computer of ours have open work copying the file? (the NS's word)"""
        try:
            path = f"/api/ts/files/{sha256}/grants/{computer_id}"
            await self._call(self._client, "GET", path)
        except Forbidden:
            return False
        return True

    async def _call(self, client: Any, method: str, path: str, **kwargs: Any) -> Any:
        try:
            return await call(client, method, path, **kwargs)
        except TaskfleetError as exc:
            self.metrics.link_error(path, exc)  # /metrics: NS link errors by call
            raise

    async def close(self) -> None:
        for task in list(self._closing):
            task.cancel()
        for client in (self._client, self._events, self._bulk):
            await client.aclose()
