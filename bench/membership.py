"""Collections at fleet scale: membership of 100,000 computers, on SQLite and PostgreSQL.

In-process (no HTTP): the NS's own service functions on a real database. For each
store it migrates a fresh database (a SQLite file in a temporary directory, or a new
PostgreSQL database dropped afterwards), creates a few rule collections, a static
one, two approved task servers, an applied Task Servers policy and agent
configuration, bulk-inserts ``--computers`` computers (5,000 of them assigned to
task server ts-1), then runs the NS's start-up step (``bootstrap.ensure_builtins``)
and times, as the median of ``--repeat`` rounds, each in its own transaction:

- run targets: ``runs.resolve_targets`` for All Computers and for rule collections;
- assignment: the membership of one computer as ``assignment.assign`` reads it;
- the agent map of ts-1 (5,000 computers with their settings), as ``GET /api/ts/agents``
  builds it, and the membership it loads for that;
- the collection list with member counts (``GET /api/collections``);
- one computer enrolled (``computers.upsert``), rolled back;
- one more rule collection created over the whole fleet, rolled back.

    .venv/bin/python bench/membership.py [--computers 100000] [--repeat 5]
        [--store sqlite --store postgres] [--pg postgresql://postgres@127.0.0.1:5432/postgres]

It runs unchanged against the code from before membership was stored (put that
checkout's ``src`` first on PYTHONPATH), for the comparison in docs/benchmarks.md.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's folder comes first on sys.path and this file would stand
# in for the standard library's ``collections`` in every later import: take it off.
sys.path.remove(os.path.dirname(os.path.realpath(__file__)))

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from taskfleet.ns import api_fleet, api_taskserver, bootstrap, drafts, runs
from taskfleet.ns import collections as collections_
from taskfleet.ns import computers as computers_
from taskfleet.ns.settings import NSSettings
from taskfleet.ns.state import NSState
from taskfleet.protocol.messages import Facts
from taskfleet.storage import database, migrate
from taskfleet.storage.models import Computer, TaskServer

ASSIGNED = 5000
RULES = {
    "Web servers": {"name_pattern": "web-*"},
    "Subnet 10.1": {"cidr": ["10.1.0.0/16"]},
    "Windows": {"os": "windows*"},
    "Databases": {"fact": {"role": "db"}},
    "Subnet 10.1 without Windows": {"include": ["Subnet 10.1"], "exclude": ["Windows"]},
}
PILOT = 1000  # static members of "Pilot"


def computer_row(n: int) -> dict[str, Any]:
    kind = ("web", "db")[n % 10] if n % 10 < 2 else "pc"
    return {
        "name": f"{kind}-{n:06}",
        "hardware_id": f"bench-{n}",
        "addresses": [f"10.{n % 3}.{n >> 8 & 255}.{n & 255}/16"],
        "os": "Windows 11" if n % 4 == 0 else "Linux 6.1",
        "agent_version": "bench",
        "interpreters": ["sh"],
        "facts": {"role": {"web": "web", "db": "db"}.get(kind, "desktop"), "rack": str(n % 40)},
        "credential_hash": f"{n:064x}",
        "enrolled_at": 1.0,
        "last_contact": 1.0,
    }


async def seed(state: NSState, count: int) -> dict[str, int]:
    """Everything but the computers through the services; the computers in bulk."""
    async with state.session() as session:
        await bootstrap.ensure_builtins(session)
    async with state.session() as session:
        for name, rules in RULES.items():
            await collections_.create(session, name, "", dict(rules), "bench")
        await collections_.create(session, "Pilot", "static members", {}, "bench")
    async with state.session() as session:
        ids = {}
        for n in (1, 2):
            computer = Computer(
                name=f"ts-{n}", hardware_id=f"bench-ts-{n}", addresses=[f"10.0.0.{n}/16"],
                os="Linux 6.1", enrolled_at=1.0,
            )  # fmt: skip
            session.add(computer)
            await session.flush()
            ts = TaskServer(
                computer_id=computer.id, name=f"ts-{n}", url=f"http://10.0.0.{n}:8410",
                approval="approved", credential_hash="x", registered_at=1.0,
                last_heartbeat=time.time() + 86400,
            )  # fmt: skip
            session.add(ts)
            await session.flush()
            ids[f"ts-{n}"] = ts.id
    started = time.perf_counter()
    async with state.session() as session:
        chunk = 10_000
        for start in range(0, count, chunk):
            rows = [computer_row(n) for n in range(start, min(start + chunk, count))]
            for row in rows[:ASSIGNED] if start == 0 else []:
                row["task_server_id"] = ids["ts-1"]
            await session.execute(insert(Computer), rows)
    print(f"  {count:,} computers bulk-inserted in {time.perf_counter() - started:.1f} s")
    async with state.session() as session:
        pilot = await collections_.get(session, "Pilot")
        members = (await session.scalars(select(Computer).order_by(Computer.id).limit(PILOT))).all()
        await collections_.set_static(session, pilot, list(members), add=True, actor="bench")
        policy = [("Web servers", ["ts-1"]), ("Subnet 10.1", ["ts-2"])]
        config = [("Pilot", 2), ("Web servers", 10), ("Windows", 15)]
        documents_ = {
            drafts.POLICY: [{"collection": c, "task_servers": s} for c, s in policy],
            drafts.AGENT_CONFIG: [
                {"collection": c, "task_request_interval_min": m} for c, m in config
            ],
        }
        for kind, entries in documents_.items():
            await drafts.save_draft(session, kind, {"entries": entries}, "bench")
            await drafts.apply(session, kind, "bench")
    return ids


async def timed(repeat: int, step: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = await step()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000, result


async def measure(url: str, count: int, repeat: int) -> list[tuple[str, float, str]]:
    engine = database.create_engine(url)
    try:
        await migrate.upgrade(engine)
        state = NSState(
            NSSettings(url, "127.0.0.1:1", Path(".")), engine, database.sessionmaker(engine)
        )
        request: Any = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(ns=state)))
        ids = await seed(state, count)
        out: list[tuple[str, float, str]] = []

        started = time.perf_counter()
        async with state.session() as session:
            await bootstrap.ensure_builtins(session)  # what every NS start runs
        out.append(("NS start (ensure_builtins)", (time.perf_counter() - started) * 1000, ""))

        async def resolve(target: str) -> int:
            async with state.session() as session:
                return len(await runs.resolve_targets(session, [target]))

        for target in ("All Computers", "Web servers", "Subnet 10.1 without Windows"):
            ms, n = await timed(repeat, lambda t=target: resolve(t))  # type: ignore[misc]
            out.append((f"run target {target!r}", ms, f"{n:,} computers"))

        async with state.session() as session:
            one = await session.scalar(
                select(Computer).where(Computer.name == f"web-{count // 2:06}")
            )
            assert one is not None

        async def membership_of_one() -> int:
            # What assignment.assign needs: the policy collections the computer is in (R3)
            # and its agent settings (the first configuration entry it is in).
            async with state.session() as session:
                computer = await session.get(Computer, one.id)
                assert computer is not None
                found = await collections_.load_membership(session, [computer.id])
                applied = await drafts.applied(session)
                applied.agent_config.settings_for(found, computer)
                return sum(found.contains(e.collection, computer) for e in applied.policy.entries)

        ms, hits = await timed(repeat, membership_of_one)
        out.append(("assignment: membership of one computer", ms, f"in {hits} policy collection"))

        async def agent_map() -> int:
            return len((await api_taskserver._entries(request, ids["ts-1"], None)).agents)

        ms, n = await timed(repeat, agent_map)
        out.append(("agent map of ts-1", ms, f"{n:,} agents"))

        async def agent_map_membership() -> int:
            # What _entries loads: the stored membership of the task server's computers;
            # before it was stored, what the rules needed for the whole fleet.
            async with state.session() as session:
                mine = select(Computer.id).where(Computer.task_server_id == ids["ts-1"])
                if not hasattr(collections_, "member_refs"):
                    await collections_.load_membership(session)
                    return len((await session.scalars(mine)).all())
                return len((await collections_.load_membership(session, mine)).of)

        ms, n = await timed(repeat, agent_map_membership)
        out.append(("  its membership part", ms, f"{n:,} computers"))

        async def listing() -> int:
            rows = await api_fleet.list_collections(request, None)  # type: ignore[arg-type]
            return sum(row["members"] for row in rows)

        ms, n = await timed(repeat, listing)
        out.append(("collection list with counts", ms, f"{n:,} memberships"))

        async def enrol_one() -> None:
            async with state.sessions() as session, session.begin():
                facts = Facts(
                    name="web-new",
                    hardware_id=f"new-{uuid.uuid4()}",
                    addresses=["10.1.2.3/16"],
                    os="Linux 6.1",
                    facts={"role": "web"},
                )
                await computers_.upsert(session, facts)
                await session.rollback()

        ms, _ = await timed(repeat, enrol_one)
        out.append(("enrol one computer (rolled back)", ms, ""))

        async def new_collection() -> None:
            async with state.sessions() as session, session.begin():
                await collections_.create(
                    session, "Racks 1-9", "", {"fact": {"rack": "1"}}, "bench"
                )
                await session.flush()
                await session.rollback()

        ms, _ = await timed(repeat, new_collection)
        out.append(("create a rule collection (rolled back)", ms, ""))
        return out
    finally:
        await engine.dispose()


async def with_postgres(admin_url: str, body: Callable[[str], Awaitable[Any]]) -> Any:
    name = f"taskfleet_bench_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(database.async_url(admin_url), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f"CREATE DATABASE {name}"))
        try:
            return await body(admin_url.rsplit("/", 1)[0] + f"/{name}")
        finally:
            async with admin.connect() as conn:
                await conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    finally:
        await admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--computers", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--store", action="append", choices=["sqlite", "postgres"])
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    if not 1 <= args.repeat <= 100 or not ASSIGNED <= args.computers <= 1_000_000:
        parser.error(f"--repeat 1 to 100, --computers {ASSIGNED:,} to 1,000,000")
    results: dict[str, list[tuple[str, float, str]]] = {}
    for store in args.store or ["sqlite", "postgres"]:
        print(f"{store}: seeding {args.computers:,} computers", flush=True)
        if store == "sqlite":
            with tempfile.TemporaryDirectory(prefix="taskfleet-bench-") as tmp:
                url = f"sqlite:///{tmp}/ns.db"
                results[store] = asyncio.run(measure(url, args.computers, args.repeat))
        else:

            async def run_pg(url: str) -> list[tuple[str, float, str]]:
                return await measure(url, args.computers, args.repeat)

            results[store] = asyncio.run(with_postgres(args.pg, run_pg))
    print(f"\n{args.computers:,} computers, median of {args.repeat} (ms)")
    stores = list(results)
    print(f"{'step':42}" + "".join(f"{s:>12}" for s in stores) + "  result")
    for i, (label, _, note) in enumerate(results[stores[0]]):
        row = "".join(f"{results[s][i][1]:12.1f}" for s in stores)
        print(f"{label:42}{row}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
