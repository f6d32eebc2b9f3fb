"""The agent's link to the NS: who it is (enrolment, credential, certificate), and
which task server it should use (R3).

State: ``credential`` is this agent's identity, kept in ``<state-dir>/identity.json``;
``None`` until it enrols. ``previous_credential`` is one the NS stopped recognising,
presented when enrolling again as the proof that this is the computer it enrolled
(ns.identity). ``trust`` holds the pinned CA, this agent's key and certificate and the
NS's revocation list (protocol.trust); ``client`` verifies the NS against that CA once
``_trusted`` (bootstrapped on first contact), and is replaced whenever the certificate
changes, the old one retired (agent.clients).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Callable

import httpx

from taskfleet.agent import inventory
from taskfleet.agent.clients import Retired
from taskfleet.agent.jitter import jittered
from taskfleet.agent.options import AgentOptions
from taskfleet.errors import (
    Conflict,
    InvalidInput,
    TaskfleetError,
    TokenRefused,
    Unauthenticated,
    Unavailable,
)
from taskfleet.protocol import facts as local_facts
from taskfleet.protocol import pki, transport
from taskfleet.protocol.calls import call
from taskfleet.protocol.messages import (
    Assignment,
    AssignmentRequest,
    CertificateRequest,
    Enrolled,
    Enrolment,
    Facts,
    InventoryReport,
    IssuedCertificate,
    RevocationList,
    from_json,
    to_json,
)
from taskfleet.protocol.private_file import write_private_json
from taskfleet.protocol.trust import NodeTrust

log = logging.getLogger("taskfleet.agent")
CERTIFICATE_CHECK_S = 600.0  # how often the agent looks whether to renew its certificate


class NsLink:
    def __init__(
        self,
        options: AgentOptions,
        retired: Retired,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.options = options
        # None: the network. Every client of this agent, to the NS and to its task server,
        # goes through it (unit tests pass an httpx.MockTransport).
        self.http_transport = http_transport
        state = options.state_dir
        self.identity_path = state / "identity.json"
        self.hardware_id = local_facts.hardware_id(state)
        self.inventory_due = inventory.Schedule(state)
        self.credential: transport.Credential | None = None
        self.previous_credential: transport.Credential | None = None
        self.trust = NodeTrust(
            state, options.ns_url, options.ca_fingerprint, options.insecure_http, "agent"
        )
        self._trusted = False
        self._retired = retired
        self.client = transport.client(options.ns_url, tls=self.tls(), transport=http_transport)
        # Called when the certificate was renewed: the task server's client takes it up.
        self.on_new_certificate: Callable[[], None] = lambda: None
        self._load_identity()

    def _load_identity(self) -> None:
        try:
            data = json.loads(self.identity_path.read_text())
            self.credential = transport.parse_credential(data["credential"])
        except (FileNotFoundError, KeyError, ValueError):
            self.credential = None

    def facts(self) -> Facts:
        return inventory.gather(
            self.options.name,
            self.hardware_id,
            self.options.addresses or None,
            self.options.facts_file or self.options.state_dir / inventory.FACTS_FILE,
        )

    async def send_inventory(self) -> InventoryReport:
        """This computer's inventory, to the NS now (agent.inventory)."""
        assert self.credential is not None
        return await inventory.send(self.client, self.credential, self.facts(), self.inventory_due)

    async def enrol(self) -> None:
        if not self.options.token:
            raise InvalidInput(
                "this agent is not enrolled: give it an enrolment token in --token-file "
                "PATH or TASKFLEET_TOKEN "
                "(create one with 'taskfleet token create --kind agent')"
            )
        body = Enrolment(token=self.options.token, facts=self.facts(), csr=self.trust.csr())
        reply = from_json(
            Enrolled,
            await call(
                self.client,
                "POST",
                "/api/agent/enrol",
                json=to_json(body),
                headers=self.previous_credential.header if self.previous_credential else None,
            ),
        )
        self.credential = transport.parse_credential(reply.credential)
        self.trust.store_certificate(reply.certificate, reply.ca_bundle)
        self._reopen()
        write_private_json(
            self.identity_path, {"computer_id": reply.computer_id, "credential": reply.credential}
        )
        log.info("enrolled as computer %s", reply.computer_id)

    async def assignment(self, failed: int | None, reason: str) -> Assignment:
        """Ask the NS which task server to use, until it answers; enrol first if need be."""
        backoff = 1.0
        while True:
            try:
                await self._ensure_trust()
                if self.credential is None:
                    await self.enrol()
                assert self.credential is not None
                if self.trust.needs_certificate():
                    await self.renew_certificate()
                body = AssignmentRequest(
                    facts=self.facts(), failed_task_server=failed, reason=reason
                )
                data = await call(
                    self.client,
                    "POST",
                    "/api/agent/assignment",
                    json=to_json(body),
                    headers=self.credential.header,
                )
                break
            except TokenRefused:
                raise  # the enrolment token itself: only a new one helps, not another try
            except Unauthenticated:
                if not self.options.token:
                    raise
                log.warning("the NS does not know this agent's credential; enrolling again")
                self.previous_credential, self.credential = self.credential, None
            except (Unavailable, TaskfleetError) as exc:
                # Bad input, or this computer's identity refused (409: enrolled already,
                # and no proof of it; an admin's 'computer reset' lets it in): say so, stop.
                if isinstance(exc, InvalidInput) or type(exc) is Conflict:
                    raise
                log.warning("asking the NS for a task server failed: %s", exc)
            await asyncio.sleep(jittered(backoff))
            backoff = min(backoff * 2, 60.0)
        return from_json(Assignment, data)

    # --- trust and certificates (protocol.trust) -----------------------------------------

    def tls(self) -> ssl.SSLContext | None:
        return self.trust.context() if self._trusted else None

    async def _ensure_trust(self) -> None:
        """Once: the pinned CA bundle, then a client to the NS that verifies against it."""
        if self._trusted:
            return
        await self.trust.bootstrap()
        self._trusted = True
        self._reopen()

    def _reopen(self) -> None:
        # New connections present the current certificate; old ones may not have had it.
        self._retired.retire(self.client)
        self.client = transport.client(
            self.options.ns_url, tls=self.tls(), transport=self.http_transport
        )

    async def renew_certificate(self) -> None:
        """A new certificate for this agent's key, before the current one expires."""
        assert self.credential is not None
        cert = self.trust.certificate()
        client = self.client
        expired = cert is not None and cert.not_valid_after_utc.timestamp() <= time.time()
        if expired:  # the handshake would fail with it: ask without, by credential and key
            client = transport.client(
                self.options.ns_url,
                tls=pki.client_context(self.trust.ca_file, None, None),
                transport=self.http_transport,
            )
        try:
            data = await call(
                client,
                "POST",
                "/api/agent/certificate",
                json=to_json(CertificateRequest(csr=self.trust.csr(self.credential.principal))),
                headers=self.credential.header,
            )
        finally:
            if expired:
                await client.aclose()
        issued = from_json(IssuedCertificate, data)
        self.trust.store_certificate(issued.certificate, issued.ca_bundle)
        self._reopen()
        self.on_new_certificate()

    async def refresh_crl(self) -> None:
        """The NS's revocation list, fetched when the agent is (re)assigned."""
        if not self.trust.tls:
            return
        try:
            crl = from_json(RevocationList, await call(self.client, "GET", "/api/ca/crl"))
            if crl.number != self.trust.crl_number:
                self.trust.store_crl(crl.crl, crl.number)
        except TaskfleetError as exc:  # keep the list it has; the NS is asked again later
            log.warning("fetching the revocation list failed: %s", exc.message)

    async def certificate_loop(self) -> None:
        while True:
            cert = self.trust.certificate()
            life = CERTIFICATE_CHECK_S * 10
            if cert is not None:
                life = (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds()
            await asyncio.sleep(jittered(min(CERTIFICATE_CHECK_S, life / 10)))
            await self.refresh_crl()
            if self.credential is not None and self.trust.needs_certificate():
                try:
                    await self.renew_certificate()
                except TaskfleetError as exc:
                    log.warning("renewing this agent's certificate failed: %s", exc)
