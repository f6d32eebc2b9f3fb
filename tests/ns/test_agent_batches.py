"""Enrolment and assignment in batches (a herd after a power cut), on SQLite and PostgreSQL:
the same outcome per agent as one by one, the token's uses and the client limits held."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select

from taskfleet.errors import Conflict, InvalidInput, TaskfleetError, Unauthenticated
from taskfleet.ns import agent_batches, collections, drafts, tokens
from taskfleet.ns.agent_batches import Ask
from taskfleet.ns.enrolment import EnrolRequest
from taskfleet.ns.identity import Presented
from taskfleet.ns.state import NSState
from taskfleet.protocol.messages import Assignment, Enrolment, Facts
from taskfleet.protocol.transport import Credential, parse_credential
from taskfleet.storage import database
from taskfleet.storage.models import (
    AuditEntry,
    Collection,
    CollectionMembership,
    Computer,
    EnrolmentToken,
)
from tests.ns.test_assignment import counts, run, task_server


def facts(name: str, host: int = 50, **extra: str) -> Facts:
    return Facts(name=name, hardware_id=f"hw-{name}", addresses=[f"10.1.1.{host}/24"], facts=extra)


async def token(state: NSState, uses: int | None) -> str:
    async with state.session() as session:
        _, secret = await tokens.create(session, "agent", "test", uses, None, "test")
        return secret


async def enrol(
    state: NSState, *enrolments: Enrolment | EnrolRequest
) -> list[Credential | TaskfleetError]:
    requests = [e if isinstance(e, EnrolRequest) else EnrolRequest(e) for e in enrolments]
    out: list[Credential | TaskfleetError] = []
    for result in await agent_batches.enrol(state, requests):
        if isinstance(result, TaskfleetError):
            out.append(result)
        else:
            parsed = parse_credential(result.credential)
            assert parsed is not None and parsed.principal == result.computer_id
            out.append(parsed)
    return out


def credential(result: Credential | TaskfleetError) -> Credential:
    assert isinstance(result, Credential), result
    return result


async def ask(state: NSState, *asks: Ask) -> list[Assignment]:
    out = []
    for result in await agent_batches.assign(state, asks):
        assert isinstance(result, Assignment), result
        out.append(result)
    return out


def asking(c: Credential, f: Facts, failed: int | None = None) -> Ask:
    return Ask(c.principal, c.secret, f, failed, "did not answer" if failed else "")


async def collection_names(state: NSState, computer_id: int) -> set[str]:
    async with state.session() as session:
        rows = await session.scalars(
            select(Collection.name)
            .join(CollectionMembership, CollectionMembership.collection_id == Collection.id)
            .where(CollectionMembership.computer_id == computer_id)
        )
        return set(rows.all())


def test_a_batch_of_enrolments_each_with_its_own_outcome(db_url: str, tmp_path: Path) -> None:
    async def body(state: NSState) -> None:
        async with state.session() as session:
            await collections.create(session, "Web", "", {"name_pattern": "web-*"}, "test")
        # Given a token with 4 uses, and pc-b enrolled before
        secret = await token(state, 4)
        [earlier] = await enrol(state, Enrolment(await token(state, None), facts("pc-b")))
        proof = Presented(credential(earlier))
        # When one batch holds: web-a, pc-b again without proof, then with its credential
        # (twice), bad addresses, web-d, web-e, an unknown token
        bad = Facts(name="pc-c", hardware_id="hw-c", addresses=["not an address"])
        results = await enrol(
            state,
            Enrolment(secret, facts("web-a")),
            Enrolment(secret, facts("pc-b")),
            EnrolRequest(Enrolment(secret, facts("pc-b")), proof),
            EnrolRequest(Enrolment(secret, facts("pc-b")), proof),
            Enrolment(secret, bad),
            Enrolment(secret, facts("web-d")),
            Enrolment(secret, facts("web-e")),
            Enrolment("tfe-agent-no-such-token", facts("web-f")),
        )
        # Then the bad facts and the unknown token are refused; pc-b without proof is a
        # takeover, refused, and so is its second claim (the first one's credential is new)
        assert isinstance(results[4], InvalidInput)
        assert isinstance(results[7], Unauthenticated) and "not recognised" in results[7].message
        assert isinstance(results[1], Conflict) and "computer reset pc-b" in results[1].message
        assert isinstance(results[3], Conflict)
        # ... and the token's four uses go to the four enrolments granted
        web_a, pc_b, web_d, web_e = (credential(results[i]) for i in (0, 2, 5, 6))
        # ... pc-b keeps its id, with a new credential; the old one is void
        assert pc_b.principal == credential(earlier).principal
        async with state.session() as session:
            uses_left = await session.scalar(
                select(EnrolmentToken.uses_left)
                .where(EnrolmentToken.label == "test")
                .where(EnrolmentToken.uses_left.is_not(None))
            )
            assert uses_left == 0
            names = (await session.scalars(select(Computer.name).order_by(Computer.name))).all()
            assert names == ["pc-b", "web-a", "web-d", "web-e"]
            actions = (await session.scalars(select(AuditEntry.action))).all()
            assert actions.count("computer.enrol") == 1 + 3
            assert actions.count("computer.re-enrol") == 1
            assert actions.count("computer.enrol-refused") == 3  # 2 claims, 1 unknown token
        replies = await ask(state, asking(pc_b, facts("pc-b")))
        assert replies[0].step == "ns-fallback"
        [refused] = await agent_batches.assign(state, [asking(credential(earlier), facts("pc-b"))])
        assert isinstance(refused, Unauthenticated)
        # ... and the new computers' membership is stored, rules applied (web-*)
        assert await collection_names(state, web_a.principal) == {"All Computers", "Web"}
        assert await collection_names(state, web_d.principal) == {"All Computers", "Web"}

    run(db_url, tmp_path, body)


def test_concurrent_batches_never_take_more_uses_than_a_token_has(
    db_url: str, tmp_path: Path
) -> None:
    async def body(state: NSState) -> None:
        # Given a token with 7 uses
        secret = await token(state, 7)
        # When four batches of five enrolments run at once, each in its own transaction
        batches = [[Enrolment(secret, facts(f"pc-{b}-{i}")) for i in range(5)] for b in range(4)]
        results = await asyncio.gather(*(enrol(state, *batch) for batch in batches))
        # Then exactly 7 enrolled and the others were told the token is used up
        outcomes = [r for batch in results for r in batch]
        assert sum(isinstance(r, Credential) for r in outcomes) == 7
        assert all(isinstance(r, Credential) or "used up" in r.message for r in outcomes)

    run(db_url, tmp_path, body)


def test_a_batch_of_assignments_keeps_the_limits_and_balances(db_url: str, tmp_path: Path) -> None:
    async def body(state: NSState) -> None:
        # Given two task servers on the computers' subnet, limit 3 each, and 10 agents
        await task_server(state, "ts-1", 2, client_limit=3)
        await task_server(state, "ts-2", 3, client_limit=3)
        secret = await token(state, None)
        herd = [facts(f"pc-{i}", 100 + i) for i in range(10)]
        enrolled = [
            credential(c) for c in await enrol(state, *(Enrolment(secret, f) for f in herd))
        ]
        # When all ask in one batch
        replies = await ask(state, *(asking(c, f) for c, f in zip(enrolled, herd, strict=True)))
        # Then the least loaded took each in turn until both were full; the rest has the NS
        names = [r.task_server_name for r in replies]
        assert names[:6] == ["ts-1", "ts-2"] * 3
        assert all(r.step == "ns-fallback" for r in replies[6:])
        assert "at its client limit (3/3)" in replies[9].reason
        assert await counts(state) == {"ts-1": (3, 3), "ts-2": (3, 3)}

    run(db_url, tmp_path, body)


def test_a_re_ask_that_keeps_its_server_tells_no_task_server(db_url: str, tmp_path: Path) -> None:
    async def body(state: NSState) -> None:
        ts = await task_server(state, "ts-1", 2, client_limit=10)
        secret = await token(state, None)
        [one] = await enrol(state, Enrolment(secret, facts("pc-1")))
        epoch = state.agents_epoch
        # When an agent is assigned for the first time: its task server is told
        assert (await ask(state, asking(credential(one), facts("pc-1"))))[0].task_server_id == ts
        assert state.agents_epoch != epoch and state.hub.version(ts) == 1
        # When it asks again after a restart and keeps its server: nobody is told
        epoch = state.agents_epoch
        assert (await ask(state, asking(credential(one), facts("pc-1"))))[0].task_server_id == ts
        assert state.agents_epoch == epoch and state.hub.version(ts) == 1
        assert await counts(state) == {"ts-1": (1, 1)}
        # When it comes back with another name: stored, membership and settings follow
        async with state.session() as session:
            await collections.create(session, "Web", "", {"name_pattern": "web-*"}, "test")
            await drafts.set_entry(
                session,
                drafts.AGENT_CONFIG,
                {"collection": "Web", "task_request_interval_min": 1},
                None,
                "test",
            )
            await drafts.apply(session, drafts.AGENT_CONFIG, "test")
        renamed = Facts(name="web-1", hardware_id="hw-pc-1", addresses=["10.1.1.50/24"])
        [reply] = await ask(state, asking(credential(one), renamed))
        assert reply.settings.task_request_interval_s == 60.0
        assert state.agents_epoch != epoch  # its settings may have changed
        assert "Web" in await collection_names(state, credential(one).principal)

    run(db_url, tmp_path, body)


def test_applied_documents_are_cached_until_any_replica_applies(
    db_url: str, tmp_path: Path
) -> None:
    async def body(state: NSState) -> None:
        # Given a second NS process's engine on the same database (another replica)
        other = database.create_engine(state.settings.db_url)
        try:
            other_sessions = database.sessionmaker(other)
            async with state.session() as session:
                first = await drafts.applied_document(session, drafts.POLICY)
            async with state.session() as session:
                # Then a second read is the cached document itself
                assert await drafts.applied_document(session, drafts.POLICY) is first
            # When the other replica applies a new agent configuration
            async with other_sessions() as session, session.begin():
                await collections.create(session, "Lab", "", {}, "test")
                await drafts.set_entry(
                    session, drafts.AGENT_CONFIG, {"collection": "Lab"}, None, "test"
                )
                await drafts.apply(session, drafts.AGENT_CONFIG, "test")
            # Then this one sees it at once
            async with state.session() as session:
                applied = await drafts.applied_documents(session)
            assert [e["collection"] for e in applied[drafts.AGENT_CONFIG]["entries"]] == ["Lab"]
            assert applied[drafts.POLICY] == first
        finally:
            await other.dispose()

    run(db_url, tmp_path, body)


def test_a_failover_in_a_batch_moves_the_place(db_url: str, tmp_path: Path) -> None:
    async def body(state: NSState) -> None:
        a = await task_server(state, "ts-a", 2, client_limit=5)
        b = await task_server(state, "ts-b", 3, client_limit=5)
        secret = await token(state, None)
        herd = [facts(f"pc-{i}", 100 + i) for i in range(4)]
        enrolled = [
            credential(c) for c in await enrol(state, *(Enrolment(secret, f) for f in herd))
        ]
        first = await ask(state, *(asking(c, f) for c, f in zip(enrolled, herd, strict=True)))
        assert [r.task_server_id for r in first] == [a, b, a, b]
        # When those on ts-a fail over from it, in one batch
        again = await ask(state, *(asking(enrolled[i], herd[i], failed=a) for i in (0, 2)))
        # Then their places moved to ts-b and the counts agree
        assert [r.task_server_id for r in again] == [b, b]
        assert again[0].reason.startswith(f"failover from task server #{a} (did not answer)")
        assert await counts(state) == {"ts-a": (0, 0), "ts-b": (4, 4)}

    run(db_url, tmp_path, body)


def test_unknown_or_wrong_credentials_are_refused_alone(db_url: str, tmp_path: Path) -> None:
    async def body(state: NSState) -> None:
        secret = await token(state, None)
        [one] = await enrol(state, Enrolment(secret, facts("pc-1")))
        c = credential(one)
        # When one batch holds a wrong secret, an unknown computer and a good credential
        results = await agent_batches.assign(
            state,
            [
                Ask(c.principal, "wrong", facts("pc-1")),
                Ask(999_999, c.secret, facts("pc-x")),
                asking(c, facts("pc-1")),
            ],
        )
        # Then only the first two are refused
        assert isinstance(results[0], Unauthenticated)
        assert isinstance(results[1], Unauthenticated)
        assert isinstance(results[2], Assignment)

    run(db_url, tmp_path, body)
