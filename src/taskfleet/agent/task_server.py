"""The agent's task server: the one the NS assigned, every call to it, and failover (R4).

State: ``assignment`` is the NS's last answer (which task server, why, and the agent
configuration); ``settings`` starts as its configuration and is replaced by each
poll's (R5: changes reach the agent on its next contact). ``client`` talks to that
task server; ``failures`` counts calls in a row it did not answer. Three make the agent
ask the NS for another; a refusal (not approved, not assigned, not recognised) makes it
ask again at once. ``generation`` counts assignments: every loop calls through here,
and when several fail together only the first one to take ``_lock`` asks the NS, the
others see that the generation moved on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import httpx
from cryptography import x509

from taskfleet.agent.clients import Retired
from taskfleet.agent.jitter import jittered
from taskfleet.agent.ns_link import NsLink
from taskfleet.errors import NotApproved, NotAssigned, Unauthenticated, Unavailable
from taskfleet.protocol import transport
from taskfleet.protocol.calls import call
from taskfleet.protocol.messages import AgentSettings, Assignment

log = logging.getLogger("taskfleet.agent")
FAILOVER_AFTER = 3  # R4


class TaskServer:
    def __init__(self, ns: NsLink, retired: Retired, on_assigned: Callable[[], None]) -> None:
        self.ns = ns
        self._retired = retired
        self._on_assigned = on_assigned  # the agent polls and sends its status at once
        self.assignment: Assignment | None = None
        self.settings = AgentSettings()
        self.client: httpx.AsyncClient | None = None
        self.failures = 0
        self.generation = 0
        self._lock = asyncio.Lock()
        ns.on_new_certificate = self.reopen

    async def assign(self, failed: int | None = None, reason: str = "") -> None:
        """Ask the NS which task server to use (``failed``: the one that stopped answering)."""
        self.assignment = await self.ns.assignment(failed, reason)
        self.settings = self.assignment.settings
        self.ns.trust.check_url(self.assignment.url, "the task server's URL")
        await self.ns.refresh_crl()
        self._open()
        self.failures = 0
        self.generation += 1
        self._on_assigned()
        print(
            f"taskfleet agent {self.ns.options.name or ''}: task server "
            f"{self.assignment.task_server_name} ({self.assignment.url}) "
            f"by {self.assignment.step}: {self.assignment.reason}",
            flush=True,
        )

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """A call to the task server; what fails counts towards failover."""
        assert self.client is not None and self.assignment is not None
        generation = self.generation
        try:
            result = await call(self.client, method, path, **kwargs)
        except Unavailable as exc:
            if generation != self.generation:
                raise  # the task server we already left: its failures are not the new one's
            self.failures += 1
            if self.failures >= FAILOVER_AFTER:
                await self._reassign(generation, self.assignment.task_server_id, str(exc)[:200])
            raise
        except (NotApproved, NotAssigned, Unauthenticated) as exc:
            log.info("task server refused: %s; asking the NS again", exc.message)
            before = self.assignment.task_server_id
            await self._reassign(generation, None, exc.message)
            if self.assignment.task_server_id == before:
                await asyncio.sleep(jittered(1.0))  # the same one again: do not hammer either
            raise
        if generation == self.generation:  # an answer from the one we left says nothing
            self.failures = 0
        return result

    async def _reassign(self, generation: int, failed: int | None, reason: str) -> None:
        async with self._lock:
            if generation != self.generation:
                return  # another loop already did it
            if failed is not None:
                log.warning("task server did not answer %d times; failing over", FAILOVER_AFTER)
            await self.assign(failed=failed, reason=reason)

    def reopen(self) -> None:
        """A new client to the same task server: the agent's certificate was renewed."""
        if self.client is not None and self.assignment is not None:
            self._open()

    def _open(self) -> None:
        assert self.assignment is not None
        self._retired.retire(self.client)
        self.client = transport.client(
            self.assignment.url,
            self.ns.credential,
            timeout=30.0,
            tls=self.ns.tls(),
            transport=self.ns.http_transport,
        )
        if self.ns.trust.tls:
            self.client.event_hooks["response"] = [self._check_certificate]

    async def _check_certificate(self, response: httpx.Response) -> None:
        """The task server's certificate must not be on the NS's revocation list: a
        revoked one may be in an impostor's hands. Refused like an unapproved one."""
        stream = response.extensions.get("network_stream")
        tls = stream.get_extra_info("ssl_object") if stream is not None else None
        if tls is None or not self.ns.trust.revoked:
            return
        der = tls.getpeercert(binary_form=True)
        if der and x509.load_der_x509_certificate(der).serial_number in self.ns.trust.revoked:
            raise NotApproved(
                f"the task server at {response.url.host} presents a revoked certificate"
            )
