"""The agents' own requests to the NS (enrolment, assignment), in batches.

After a power cut 100,000 agents enrol or ask for their task server within their
start-up window (R11). Each kind of request goes through a ``Batcher``: the
requests that arrive while one batch is written go together in the next, one
transaction each (``enrolment.enrol_many``, ``assignment.assign_many``). An agent
that asks again with its credential and keeps its task server (most of them after
a power cut) costs its share of a few statements: its computer and collections
are read with the batch's, its row and record written with theirs, and no task
server is told anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from fastapi import Request
from sqlalchemy import select, update

from taskfleet.errors import Forbidden, TaskfleetError, Unauthenticated
from taskfleet.ns import assignment, audit, certificates, computers, enrolment
from taskfleet.ns.assignment import Asker
from taskfleet.ns.batches import Batcher
from taskfleet.ns.enrolment import EnrolRequest
from taskfleet.ns.state import NSState, agents_changed, ns_state
from taskfleet.protocol.messages import Assignment, Enrolled, Facts
from taskfleet.protocol.transport import secret_matches
from taskfleet.storage.models import Computer

MAX_BATCH = 200


@dataclass(frozen=True)
class Ask:
    """An agent asking which task server to use (R3), with the credential it presented."""

    computer_id: int
    secret: str
    facts: Facts
    failed_task_server: int | None = None
    reason: str = ""


@dataclass
class AgentBatches:
    enrolments: Batcher[EnrolRequest, Enrolled]
    assignments: Batcher[Ask, Assignment]


def agent_batches(request: Request) -> AgentBatches:
    """This NS application's batchers, made at its first agent request."""
    found = getattr(request.app.state, "agent_batches", None)
    if isinstance(found, AgentBatches):
        return found
    state = ns_state(request)
    made = AgentBatches(
        Batcher("enrolments", partial(enrol, state), MAX_BATCH),
        Batcher("assignments", partial(assign, state), MAX_BATCH, key=lambda ask: ask.computer_id),
    )
    request.app.state.agent_batches = made
    return made


async def enrol(
    state: NSState, requests: Sequence[EnrolRequest]
) -> list[Enrolled | TaskfleetError]:
    """Enrol many in one transaction, and sign each one's certificate request in it."""
    results: list[Enrolled | TaskfleetError] = []
    async with state.session() as session:
        outcome = await enrolment.enrol_many(session, requests)
        keys: list[dict[str, object]] = []
        bundle = state.authority.bundle_pem.decode() if state.authority is not None else ""
        for request, result in zip(requests, outcome.results, strict=True):
            if isinstance(result, TaskfleetError):
                results.append(result)
                continue
            enrolled = Enrolled(computer_id=result.principal, credential=str(result))
            if state.authority is not None and request.enrolment.csr:
                issued, key = await certificates.issue(
                    state, session, "agent", result.principal, request.enrolment.csr
                )
                enrolled.certificate, enrolled.ca_bundle = issued.pem, bundle
                keys.append({"id": result.principal, "key_id": key})
            results.append(enrolled)
        if keys:  # the key its certificate names: proof of this computer from now on
            await session.execute(update(Computer), keys)
        if outcome.renewed:  # once committed, task servers drop the old credentials they hold
            agents_changed(session)
    return results


async def assign(state: NSState, asks: Sequence[Ask]) -> list[Assignment | TaskfleetError]:
    """Authenticate each asker, store facts that changed, then assign them together."""
    out: list[Assignment | TaskfleetError] = [
        Unauthenticated("agent credential not recognised; enrol the agent again") for _ in asks
    ]
    async with state.session() as session:
        rows = await session.execute(
            select(
                Computer.id,
                Computer.credential_hash,
                Computer.task_server_id,
                *computers.FACT_COLUMNS,
            ).where(Computer.id.in_(sorted({ask.computer_id for ask in asks})))
        )
        found = {row.id: row for row in rows}
        known: list[tuple[int, Ask, Facts]] = []  # (position, ask, the facts it will have)
        moved: dict[int, Facts] = {}  # computer id -> its new facts
        for i, ask in enumerate(asks):
            row = found.get(ask.computer_id)
            if row is None or not row.credential_hash:
                continue
            if not secret_matches(ask.secret, row.credential_hash):
                continue
            stored = computers.facts_of(row)
            if ask.facts.hardware_id != stored.hardware_id:
                # Another computer's hardware id under this credential: an identity
                # claim the credential does not back (ns.identity); refused, audited.
                out[i] = Forbidden(
                    f"this credential is computer {ask.computer_id}'s; the facts name "
                    "another computer's hardware id, so they are refused"
                )
                audit.record(
                    session,
                    f"agent:{ask.computer_id}",
                    "agent.forbidden",
                    stored.name,
                    tried="assignment",
                    why="facts name another hardware id",
                )
                continue
            if ask.facts != stored:
                moved[ask.computer_id] = stored = ask.facts
            known.append((i, ask, stored))
        if moved:
            # Rare (an agent whose address or name changed): through the ORM, whose flush
            # hooks keep the stored membership true (ns/membership.py).
            for computer in await session.scalars(
                select(Computer).where(Computer.id.in_(sorted(moved)))
            ):
                computers.apply_facts(computer, moved[computer.id])
            await session.flush()
        collections = await assignment.collections_of(session, [a.computer_id for _, a, _ in known])
        askers = [
            Asker(
                id=ask.computer_id,
                name=facts.name,
                addresses=tuple(facts.addresses),
                holds=found[ask.computer_id].task_server_id,
                collections=frozenset(collections.get(ask.computer_id, ())),
                failed_task_server=ask.failed_task_server,
                agent_reason=ask.reason,
                changed=ask.computer_id in moved,
            )
            for _, ask, facts in known
        ]
        assigned = await assignment.assign_many(state, session, askers) if askers else []
    for (i, _, _), reply in zip(known, assigned, strict=True):
        out[i] = reply
    return out
