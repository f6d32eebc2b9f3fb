"""The agent's life: enrol, get a task server, poll, listen, run, report (R4, R5, R6, R8, R11).

Three loops share one connection to the task server:
- the notification channel: a long poll that returns when the agent is tickled;
- the poll: every Task Request Interval (with jitter), or at once after a tickle;
- the status sender: every Send Status Interval, or at once for live runs.
Three failed attempts in a row against the task server make the agent ask
the NS for another (failover). Refusals (not approved, not assigned) make it
ask again at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import random
import ssl
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509

from taskfleet.agent import (
    client_jobs,
    copy_file,
    interrupted,
    inventory,
    job_resume,
    outcome,
    power,
    retries,
    scripts,
)
from taskfleet.agent import facts as local_facts
from taskfleet.agent.cancel import Stopper
from taskfleet.agent.ledger import Ledger
from taskfleet.agent.outcome import Outcome
from taskfleet.errors import (
    Busy,
    Conflict,
    InvalidInput,
    NotApproved,
    NotAssigned,
    TaskfleetError,
    Unauthenticated,
    Unavailable,
)
from taskfleet.protocol import pki, transport
from taskfleet.protocol.calls import call
from taskfleet.protocol.fields import MAX_OUTPUT_LIMIT, fit_return_code, printable
from taskfleet.protocol.jobs import JOB_TASK_TYPE
from taskfleet.protocol.messages import (
    AgentSettings,
    Assignment,
    AssignmentRequest,
    CertificateRequest,
    ChannelReply,
    Enrolled,
    Enrolment,
    InstanceState,
    InventoryReport,
    IssuedCertificate,
    PollReply,
    RevocationList,
    StatusAck,
    StatusEvent,
    TaskType,
    WorkItem,
    by_request_size,
    cancel_ids,
    from_json,
    to_json,
)
from taskfleet.protocol.spool import Spool
from taskfleet.protocol.trust import NodeTrust

log = logging.getLogger("taskfleet.agent")
FAILOVER_AFTER = 3  # R4
JITTER = 0.1  # R5: +-10% on every interval
RETIRE_S = 120.0  # a replaced client closes after this: longer than any request's wait
CERTIFICATE_CHECK_S = 600.0  # how often the agent looks whether to renew its certificate


@dataclass
class AgentOptions:
    ns_url: str
    state_dir: Path
    token: str = ""
    name: str | None = None
    addresses: list[str] = field(default_factory=list)
    startup_window_s: float = 60.0  # R11
    channel_wait_s: float = 50.0
    ca_fingerprint: str = ""  # pins the NS's CA on first start (protocol.trust)
    insecure_http: bool = False
    facts_file: Path | None = None  # custom facts (agent.inventory); <state-dir>/facts.json
    power_test_file: Path | None = None  # power control records, never runs (agent.power)


def storable(event: StatusEvent) -> StatusEvent:
    """``event`` as the task server takes it: an event spooled by an older agent may hold an
    unsigned Windows exit code, or output with NUL (protocol.fields)."""
    output = None if event.output is None else printable(event.output)
    return_code = fit_return_code(event.return_code)
    if output == event.output and return_code == event.return_code:
        return event
    return dataclasses.replace(event, output=output, return_code=return_code)


def jittered(seconds: float) -> float:
    return seconds * random.uniform(1 - JITTER, 1 + JITTER)


class Agent:
    def __init__(self, options: AgentOptions) -> None:
        self.options = options
        state = options.state_dir
        state.mkdir(parents=True, exist_ok=True)
        self.identity_path = state / "identity.json"
        self.hardware_id = local_facts.hardware_id(state)
        self.spool = Spool(state / "spool")
        self.ledger = Ledger(state / "instances")
        # Scripts running now, and instances the NS canceled (agent.cancel).
        self.stopper = Stopper(self.ledger.directory)
        self.inventory_due = inventory.Schedule(state)
        self.credential: transport.Credential | None = None
        # The credential the NS stopped recognising: presented when enrolling again, as
        # the proof that this is the computer it enrolled (ns.identity).
        self.previous_credential: transport.Credential | None = None
        self.assignment: Assignment | None = None
        self.settings = AgentSettings()
        self.trust = NodeTrust(
            state, options.ns_url, options.ca_fingerprint, options.insecure_http, "agent"
        )
        self._trusted = False
        self.ns = transport.client(options.ns_url, tls=self._tls())
        self.ts: httpx.AsyncClient | None = None
        self.failures = 0
        self.generation = 0
        self._assign_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._flush = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._retiring: set[asyncio.Task[None]] = set()  # replaced clients, closing later
        self._stop = asyncio.Event()
        self._sending = asyncio.Lock()
        self.restart_requested = False
        self._resuming: list[job_resume.Saved] = []  # client jobs paused for a restart
        self._load_identity()

    # --- identity and assignment ---------------------------------------------------

    def _load_identity(self) -> None:
        try:
            data = json.loads(self.identity_path.read_text())
            self.credential = transport.parse_credential(data["credential"])
        except (FileNotFoundError, KeyError, ValueError):
            self.credential = None

    def facts(self) -> Any:
        return inventory.gather(
            self.options.name,
            self.hardware_id,
            self.options.addresses or None,
            self.options.facts_file or self.options.state_dir / inventory.FACTS_FILE,
        )

    async def send_inventory(self) -> InventoryReport:
        """This computer's inventory, to the NS now (agent.inventory)."""
        assert self.credential is not None
        return await inventory.send(self.ns, self.credential, self.facts(), self.inventory_due)

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
                self.ns,
                "POST",
                "/api/agent/enrol",
                json=to_json(body),
                headers=self.previous_credential.header if self.previous_credential else None,
            ),
        )
        self.credential = transport.parse_credential(reply.credential)
        self.trust.store_certificate(reply.certificate, reply.ca_bundle)
        await self._reopen_ns()
        tmp = self.identity_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"computer_id": reply.computer_id, "credential": reply.credential}, fh)
        os.replace(tmp, self.identity_path)
        log.info("enrolled as computer %s", reply.computer_id)

    async def assign(self, failed: int | None = None, reason: str = "") -> None:
        """Ask the NS which task server to use, until it answers."""
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
                    self.ns,
                    "POST",
                    "/api/agent/assignment",
                    json=to_json(body),
                    headers=self.credential.header,
                )
                break
            except Unauthenticated as exc:
                if "enrolment token" in exc.message or not self.options.token:
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
        assert self.credential is not None
        self.assignment = from_json(Assignment, data)
        self.settings = self.assignment.settings
        self.trust.check_url(self.assignment.url, "the task server's URL")
        await self._refresh_crl()
        self._open_ts()
        self.failures = 0
        self.generation += 1
        self._wake.set()
        self._flush.set()
        print(
            f"taskfleet agent {self.options.name or ''}: task server "
            f"{self.assignment.task_server_name} ({self.assignment.url}) "
            f"by {self.assignment.step}: {self.assignment.reason}",
            flush=True,
        )

    # --- trust and certificates (protocol.trust) -----------------------------------------

    def _tls(self) -> ssl.SSLContext | None:
        return self.trust.context() if self._trusted else None

    async def _ensure_trust(self) -> None:
        """Once: the pinned CA bundle, then a client to the NS that verifies against it."""
        if self._trusted:
            return
        await self.trust.bootstrap()
        self._trusted = True
        await self._reopen_ns()

    async def _reopen_ns(self) -> None:
        # New connections present the current certificate; old ones may not have had it.
        self._retire(self.ns)
        self.ns = transport.client(self.options.ns_url, tls=self._tls())

    async def renew_certificate(self) -> None:
        """A new certificate for this agent's key, before the current one expires."""
        assert self.credential is not None
        cert = self.trust.certificate()
        client = self.ns
        expired = cert is not None and cert.not_valid_after_utc.timestamp() <= time.time()
        if expired:  # the handshake would fail with it: ask without, by credential and key
            client = transport.client(
                self.options.ns_url,
                tls=pki.client_context(self.trust.ca_file, None, None),
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
        await self._reopen_ns()
        if self.ts is not None and self.assignment is not None:
            self._open_ts()

    def _retire(self, client: httpx.AsyncClient | None) -> None:
        """Close a replaced client once the requests other loops have on it are done
        (closing it at once would fail them with 'client has been closed')."""
        if client is None:
            return

        async def close_later() -> None:
            await asyncio.sleep(RETIRE_S)
            await client.aclose()

        task = asyncio.create_task(close_later())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def _open_ts(self) -> None:
        assert self.assignment is not None
        self._retire(self.ts)
        self.ts = transport.client(
            self.assignment.url, self.credential, timeout=30.0, tls=self._tls()
        )
        if self.trust.tls:
            self.ts.event_hooks["response"] = [self._check_task_server]

    async def _check_task_server(self, response: httpx.Response) -> None:
        """The task server's certificate must not be on the NS's revocation list: a
        revoked one may be in an impostor's hands. Refused like an unapproved one."""
        stream = response.extensions.get("network_stream")
        tls = stream.get_extra_info("ssl_object") if stream is not None else None
        if tls is None or not self.trust.revoked:
            return
        der = tls.getpeercert(binary_form=True)
        if der and x509.load_der_x509_certificate(der).serial_number in self.trust.revoked:
            raise NotApproved(
                f"the task server at {response.url.host} presents a revoked certificate"
            )

    async def _refresh_crl(self) -> None:
        """The NS's revocation list, fetched when the agent is (re)assigned."""
        if not self.trust.tls:
            return
        try:
            crl = from_json(RevocationList, await call(self.ns, "GET", "/api/ca/crl"))
            if crl.number != self.trust.crl_number:
                self.trust.store_crl(crl.crl, crl.number)
        except TaskfleetError as exc:  # keep the list it has; the NS is asked again later
            log.warning("fetching the revocation list failed: %s", exc.message)

    async def _certificate_loop(self) -> None:
        while True:
            cert = self.trust.certificate()
            life = CERTIFICATE_CHECK_S * 10
            if cert is not None:
                life = (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds()
            await asyncio.sleep(jittered(min(CERTIFICATE_CHECK_S, life / 10)))
            await self._refresh_crl()
            if self.credential is not None and self.trust.needs_certificate():
                try:
                    await self.renew_certificate()
                except TaskfleetError as exc:
                    log.warning("renewing this agent's certificate failed: %s", exc)

    async def ts_call(self, method: str, path: str, **kwargs: Any) -> Any:
        assert self.ts is not None and self.assignment is not None
        generation = self.generation
        try:
            result = await call(self.ts, method, path, **kwargs)
        except Unavailable as exc:
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
        self.failures = 0
        return result

    async def _reassign(self, generation: int, failed: int | None, reason: str) -> None:
        async with self._assign_lock:
            if generation != self.generation:
                return  # another loop already did it
            if failed is not None:
                log.warning("task server did not answer %d times; failing over", FAILOVER_AFTER)
            await self.assign(failed=failed, reason=reason)

    # --- loops -----------------------------------------------------------------------

    def stop(self) -> None:
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
            self._recover()
            assigner = asyncio.create_task(self.assign())
            stopper = asyncio.create_task(self._stop.wait())
            tasks = [assigner, stopper]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if self._stop.is_set():
                return
            assigner.result()
            self._resume_jobs()
            loops = [
                asyncio.create_task(self._channel_loop()),
                asyncio.create_task(self._poll_loop()),
                asyncio.create_task(self._status_loop()),
                asyncio.create_task(self._certificate_loop()),
                asyncio.create_task(
                    inventory.loop(
                        self.inventory_due,
                        lambda: self.settings.inventory_interval_s,
                        self.send_inventory,
                    )
                ),
            ]
            tasks += loops
            done, _ = await asyncio.wait([*loops, stopper], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopper and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            for task in [*tasks, *self._running]:
                task.cancel()
            await asyncio.gather(*tasks, *self._running, return_exceptions=True)
            for task in list(self._retiring):
                task.cancel()
            await self.ns.aclose()
            if self.ts is not None:
                await self.ts.aclose()

    def _recover(self) -> None:
        """Instances cut off by a restart: not started yet may run; started ones are failed,
        but for client jobs that their own restart step paused (agent.job_resume)."""
        for instance_id, state in self.ledger.unfinished().items():
            saved = job_resume.load(self.ledger.directory, instance_id)
            if state == InstanceState.RUNNING and saved is not None:
                self._resuming.append(saved)  # its own restart step paused it: go on after it
            elif state == InstanceState.RUNNING:
                # Kill what is left of its script first (agent.interrupted), then report.
                output = interrupted.stop_leftovers(self.ledger.directory, instance_id)
                self.ledger.record(instance_id, InstanceState.FAILED)
                self._emit_raw(
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

    async def _channel_loop(self) -> None:
        while True:
            try:
                data = await self.ts_call(
                    "GET",
                    "/agent/channel",
                    params={"wait": self.options.channel_wait_s},
                    timeout=self.options.channel_wait_s + 15,
                )
                reply = from_json(ChannelReply, data or {"tickle": False})
                for item in reply.work:
                    self._accept(item)
                self._cancel(reply.cancel)
                if reply.tickle and not reply.work:
                    self._wake.set()
            except Busy as exc:
                # Full or stopping (503, Retry-After, jittered by the server): no failed
                # attempt (R4), the server is up; polls go on meanwhile.
                await asyncio.sleep(exc.retry_after_s or jittered(30.0))
            except (TaskfleetError, ValueError, TypeError) as exc:  # also a malformed reply
                log.debug("notification channel failed: %s", exc)
                await asyncio.sleep(jittered(2.0))

    async def _poll_loop(self) -> None:
        while True:
            try:
                data = await self.ts_call("GET", "/agent/poll")
                reply = from_json(PollReply, data)
                self.settings = reply.settings
                for item in reply.work:
                    self._accept(item)
                self._cancel(reply.cancel)
            except TaskfleetError as exc:
                log.debug("poll failed: %s", exc)
                await asyncio.sleep(jittered(2.0))
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), jittered(self.settings.task_request_interval_s)
                )

    async def _status_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._flush.wait(), jittered(self.settings.send_status_interval_s)
                )
            self._flush.clear()
            try:
                await self.send_status()
            except TaskfleetError as exc:
                log.debug("sending status failed, kept in the spool: %s", exc)
                await asyncio.sleep(jittered(2.0))
                if len(self.spool):
                    self._flush.set()

    async def send_status(self) -> None:
        async with self._sending:  # the status loop and a restart-agent task may both send
            await self._send_status()

    async def _send_status(self) -> None:
        while events := self.spool.pending(200):
            # Requests bounded in bytes too: 200 events of 1 MiB output are not one request.
            for request in by_request_size([storable(e) for e in events]):
                await self._send_events(request)
            if len(events) < 200:
                return

    async def _send_events(self, events: list[StatusEvent]) -> None:
        try:
            data = await self.ts_call(
                "POST", "/agent/status", json={"events": [to_json(e) for e in events]}
            )
        except InvalidInput as exc:
            # A field the task server refuses (R12): find the event at fault by halves and
            # drop it, or every later status of this agent would wait behind it forever.
            if len(events) == 1:
                log.error("status event %s refused and dropped: %s", events[0].id, exc.message)
                self.spool.ack([events[0].id])
                return
            half = len(events) // 2
            await self._send_events(events[:half])
            await self._send_events(events[half:])
            return
        ack = from_json(StatusAck, data)
        self.spool.ack(ack.accepted + ack.rejected)

    # --- work ------------------------------------------------------------------------

    def _emit_raw(
        self,
        instance_id: int,
        state: str,
        rc: int | None,
        output: str | None,
        live: bool,
        reason: str | None = None,
        steps: list[dict[str, Any]] | None = None,
    ) -> None:
        assert self.credential is not None
        event = StatusEvent(
            id=uuid.uuid4().hex,
            instance_id=instance_id,
            computer_id=self.credential.principal,
            state=state,
            at=time.time(),
            return_code=rc,
            output=output,
            live=live,
            reason=reason,
            steps=steps,
        )
        self.spool.put([event])
        if live:
            self._flush.set()

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
        self._emit_raw(item.instance_id, state, rc, output, live, reason, steps)
        if InstanceState(state).terminal:
            self.stopper.done(item.instance_id)

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
            self._emit_raw(
                instance_id,
                InstanceState.CANCELED,
                None,
                "taskfleet: canceled before it started",
                live=True,
                reason="canceled",
            )
        elif not InstanceState(state).terminal:
            self.stopper.cancel(instance_id)

    def _accept(self, item: WorkItem) -> None:
        if self.ledger.state(item.instance_id) is not None:
            return  # already accepted once: never run twice (R8)
        if self._stop.is_set():
            return  # restarting: it would be cut off; the task server hands it out again
        self._emit(item, InstanceState.RECEIVED)
        task = asyncio.create_task(self._execute(item))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _execute(self, item: WorkItem) -> None:
        self._emit(item, InstanceState.RUNNING)
        if item.task_type == TaskType.RESTART_AGENT:
            self._emit(item, InstanceState.SUCCEEDED, 0, "taskfleet: agent restarting")
            return await self._restart()
        if item.task_type == TaskType.COPY_FILE:
            return self._finish(item, await copy_file.run(item, self.ts))
        if item.task_type == TaskType.POWER_CONTROL:
            test_file = power.recording_file(self.options.power_test_file)
            return self._finish(
                item, await power.run(item.params, test_file, lambda o: self._finish_now(item, o))
            )
        if item.task_type == JOB_TASK_TYPE:  # a client job: its steps, here
            return self._finish(item, await self._run_job(item))
        self._finish(item, await self._run_step(item))

    async def _restart(self) -> None:
        with contextlib.suppress(TaskfleetError, TimeoutError):
            await asyncio.wait_for(self.send_status(), 10)
        # R10: the process restarts itself (see agent.cli) and so forgets its task server.
        self.restart_requested = True
        self._stop.set()

    async def _run_job(self, item: WorkItem, saved: job_resume.Saved | None = None) -> Outcome:
        """A client job from its start, or from where its restart step paused it."""
        directory = self.ledger.directory
        test_mode = power.recording_file(self.options.power_test_file) is not None
        resume = None
        if saved is not None:
            canceled = lambda: self.stopper.canceled(item.instance_id)  # noqa: E731
            resume = await job_resume.resumed(directory, saved, canceled)
        return await client_jobs.run(
            item,
            self._run_step,
            lambda paused: job_resume.keep(directory, item, paused, test_mode),
            resume,
        )

    def _resume_jobs(self) -> None:
        for saved in self._resuming:
            task = asyncio.create_task(self._resume_job(saved))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        self._resuming = []

    async def _resume_job(self, saved: job_resume.Saved) -> None:
        log.info("instance %s: the job goes on after its restart", saved.item.instance_id)
        self._finish(saved.item, await self._run_job(saved.item, saved))

    async def _run_step(self, item: WorkItem) -> Outcome:
        """A task that ends in an ``Outcome``: on its own, or as a client job's step."""
        if item.task_type == TaskType.COPY_FILE:
            return await copy_file.run(item, self.ts)
        if item.task_type == TaskType.INVENTORY:
            return await inventory.run_task(self.send_inventory)
        if item.task_type == TaskType.RESTART_AGENT:  # a client job's step (agent.job_resume)
            return await job_resume.restart_agent_step(self._restart)
        if item.task_type == TaskType.POWER_CONTROL:  # likewise; alone, see _execute
            return await job_resume.power_step(
                item,
                power.recording_file(self.options.power_test_file),
                self.send_status,
                lambda: self.stopper.canceled(item.instance_id),
            )
        if item.task_type != TaskType.RUN_SCRIPT:
            return outcome.failed(f"this agent cannot run a {item.task_type!r} task here")

        # Placeholders, options and secret masking: agent.scripts; retries and back-off
        # within the timeout: agent.retries; the process recorded, to stop it: agent.cancel.
        async def attempt(timeout_s: float) -> Outcome:
            if self.stopper.canceled(item.instance_id):
                return Outcome(InstanceState.CANCELED, None, "")
            try:
                return await scripts.run(
                    item,
                    self.facts(),
                    env={
                        "TASKFLEET_TASK_SERVER": self.assignment.task_server_name
                        if self.assignment
                        else "",
                        "TASKFLEET_COMPUTER": self.options.name or "",
                        "TASKFLEET_RUN": str(item.run_id),
                    },
                    output_limit=min(max(0, self.settings.output_limit_bytes), MAX_OUTPUT_LIMIT),
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

    def _finish(self, item: WorkItem, result: Outcome | None) -> None:
        if result is not None:  # (None: reported already)
            self._emit(item, result.state, result.return_code, result.output, result.steps)

    async def _finish_now(self, item: WorkItem, result: Outcome) -> None:
        """Report and send at once: what comes next may stop this agent (a power off)."""
        self._finish(item, result)
        with contextlib.suppress(TaskfleetError, TimeoutError):
            await asyncio.wait_for(self.send_status(), 10)
