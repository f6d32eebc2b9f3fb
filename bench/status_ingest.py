"""Status ingest: how many status events per second one NS process applies (issue 7 goal).

On 127.0.0.1 only, everything it starts stopped by PID at the end:

1. a real NS on a fresh PostgreSQL database (or SQLite file, ``--store sqlite``)
   and ``--ts`` task-server identities registered and approved through the real API;
2. ``--computers`` computers, each with one instance of one run, written straight
   into the database (setting up is not what is measured), shared out over the
   task servers;
3. every instance's Received, Running and Succeeded events (with a short output),
   sent as task servers send them: ``POST /api/ts/status`` in batches of ``--batch``,
   one request in flight per task server; then every batch again (a resend after a
   lost acknowledgement: the NS must count each event once).

Prints events/s for the first pass and for the resend, and checks that every
instance ended Succeeded with status_count 3.

    .venv/bin/python -P bench/status_ingest.py [--computers 20000] [--ts 2] [--store postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert

from taskfleet.cli.launcher import Launcher, free_port, wait_http
from taskfleet.protocol.transport import parse_credential
from taskfleet.storage import database
from taskfleet.storage.models import AssignmentRecord, Computer, Instance, Run, Task

PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"


async def pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def seed(db_url: str, ts_ids: list[int], computers: int) -> list[tuple[int, int, int]]:
    """Computers, assignment records, one run; (instance, computer, task server) triples."""
    engine = database.create_engine(db_url)
    now = time.time()
    triples = []
    async with engine.begin() as conn:
        task_id = (
            await conn.execute(
                insert(Task)
                .values(name="ingest", type="run-script", params={}, timeout_s=60, created_at=now)
                .returning(Task.id)
            )
        ).scalar_one()
        run_id = (
            await conn.execute(
                insert(Run)
                .values(task_id=task_id, targets=["bench"], live=True, created_at=now)
                .returning(Run.id)
            )
        ).scalar_one()
        for start in range(0, computers, 5000):
            rows = [
                {
                    "name": f"ingest-{i:06d}",
                    "hardware_id": f"ingest-{i:06d}",
                    "addresses": [],
                    "interpreters": [],
                    "facts": {},
                    "enrolled_at": now,
                    "task_server_id": ts_ids[i % len(ts_ids)],
                    "assign_step": "policy",
                }
                for i in range(start, min(computers, start + 5000))
            ]
            ids = (await conn.execute(insert(Computer).returning(Computer.id), rows)).scalars()
            for computer_id, row in zip(ids.all(), rows, strict=True):
                triples.append((0, computer_id, row["task_server_id"]))
        await conn.execute(
            insert(AssignmentRecord),
            [
                {"computer_id": c, "task_server_id": t, "step": "policy", "reason": "", "at": now}
                for _, c, t in triples
            ],
        )
        instance_ids = (
            await conn.execute(
                insert(Instance).returning(Instance.id, Instance.computer_id),
                [{"run_id": run_id, "computer_id": c, "state": "Pending"} for _, c, _ in triples],
            )
        ).all()
        by_computer = {c: i for i, c in instance_ids}
        triples = [(by_computer[c], c, t) for _, c, t in triples]
    await engine.dispose()
    return triples


def events_for(instance: int, computer: int) -> list[dict[str, Any]]:
    now = time.time()
    return [
        {
            "id": uuid.uuid4().hex,
            "instance_id": instance,
            "computer_id": computer,
            "state": state,
            "at": now + n,
            "return_code": 0 if state == "Succeeded" else None,
            "output": "ok\n" if state == "Succeeded" else None,
            "live": True,
        }
        for n, state in enumerate(("Received", "Running", "Succeeded"))
    ]


async def send_all(
    ns_url: str, credentials: dict[int, str], batches: dict[int, list[list[Any]]]
) -> float:
    async def one_server(ts_id: int) -> None:
        headers = {"Authorization": f"Bearer {credentials[ts_id]}"}
        async with httpx.AsyncClient(base_url=ns_url, headers=headers, timeout=120) as client:
            for batch in batches[ts_id]:
                response = await client.post("/api/ts/status", json={"events": batch})
                response.raise_for_status()
                ack = response.json()
                if ack["rejected"] or len(ack["accepted"]) != len(batch):
                    raise SystemExit(f"the NS did not accept every event: {str(ack)[:300]}")

    started = time.perf_counter()
    await asyncio.gather(*(one_server(t) for t in batches))
    return time.perf_counter() - started


async def main_async(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    db_name = f"ingest_{uuid.uuid4().hex[:8]}"
    if args.store == "postgres":
        await pg(f'CREATE DATABASE "{db_name}"')
        db_url = f"postgresql://postgres@127.0.0.1:5432/{db_name}"
    else:
        db_url = f"sqlite:///{root}/ns.db"
    launcher = Launcher(root / "logs")
    ns_url = f"http://127.0.0.1:{free_port()}"
    try:
        ns = launcher.start(
            "ns",
            "ns",
            "serve",
            "--db",
            db_url,
            "--bind",
            ns_url[7:],
            "--data-dir",
            str(root / "ns"),
            "--insecure-http",  # hand-made agents speak plain HTTP
        )
        wait_http(f"{ns_url}/hello", ns, timeout=60)
        admin = parse_credential((root / "ns" / "admin.credential").read_text())
        assert admin is not None
        credentials: dict[int, str] = {}
        async with httpx.AsyncClient(base_url=ns_url, headers=admin.header, timeout=60) as api:
            token = (await api.post("/api/tokens", json={"kind": "taskserver"})).json()["token"]
            for n in range(args.ts):
                facts = {"name": f"ingest-ts-{n}", "hardware_id": f"ingest-ts-{n}"}
                body = {"token": token, "facts": facts, "url": f"http://127.0.0.1:{9 + n}"}
                reply = (await api.post("/api/ts/register", json=body)).json()
                credentials[reply["task_server_id"]] = reply["credential"]
                await api.post(f"/api/taskservers/{reply['name']}/approve")
        triples = await seed(db_url, list(credentials), args.computers)
        batches: dict[int, list[list[Any]]] = {t: [] for t in credentials}
        per_ts: dict[int, list[dict[str, Any]]] = {t: [] for t in credentials}
        for instance, computer, ts_id in triples:
            per_ts[ts_id] += events_for(instance, computer)
        for ts_id, events in per_ts.items():
            batches[ts_id] = [events[i : i + args.batch] for i in range(0, len(events), args.batch)]
        total = sum(len(e) for e in per_ts.values())
        first = await send_all(ns_url, credentials, batches)
        again = await send_all(ns_url, credentials, batches)
        async with httpx.AsyncClient(base_url=ns_url, headers=admin.header, timeout=60) as api:
            run = (await api.get("/api/runs/1", params={"instances": "false"})).json()
        return {
            "store": args.store,
            "computers": args.computers,
            "task_servers": args.ts,
            "batch": args.batch,
            "events": total,
            "events_per_s": round(total / first),
            "resent_events_per_s": round(total / again),
            "counts": run["counts"],
        }
    finally:
        launcher.stop_all()
        if args.store == "postgres":
            await pg(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--computers", type=int, default=20000)
    parser.add_argument("--ts", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--store", choices=("postgres", "sqlite"), default="postgres")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="taskfleet-ingest-"))
    try:
        result = asyncio.run(main_async(args, root))
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)
    print(json.dumps(result, indent=2))
    print(
        f"\nRESULT store={result['store']} events={result['events']} "
        f"events_per_s={result['events_per_s']} resent_per_s={result['resent_events_per_s']}"
    )
    goal = 20_000
    rate = result["events_per_s"]
    verdict = "met" if rate >= goal else f"MISSED by {goal - rate} events/s ({rate / goal:.2f}x)"
    print(f"GOAL >= {goal:,} events/s on one NS process: {verdict}")
    if result["counts"] != {"Succeeded": args.computers}:
        sys.exit(f"not every instance Succeeded: {result['counts']}")


if __name__ == "__main__":
    main()
