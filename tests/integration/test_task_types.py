"""Copy file, power control and inventory tasks, with real NS, task server and agents."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from sqlalchemy import update

from taskfleet.cli.launcher import wait_until
from taskfleet.storage import database
from taskfleet.storage.models import FileChunk
from tests.fleet import ApiError, Fleet

CONTENT = b"taskfleet copy-file test\n" * 4096 + bytes(range(256))  # ~100 KiB, binary too
SHA256 = hashlib.sha256(CONTENT).hexdigest()


def _upload(fleet: Fleet, name: str, content: bytes = CONTENT) -> dict[str, Any]:
    stored: dict[str, Any] = fleet.api.call(
        "POST", "/api/files", params={"name": name}, content=content
    )
    return stored


def _copy_task(fleet: Fleet, name: str, file: str, path: Path, mode: str = "0640") -> None:
    fleet.api.post(
        "/api/tasks/copy-file",
        {"name": name, "file": file, "path": str(path), "mode": mode, "timeout_s": 60},
    )


def _one(run: dict[str, Any]) -> dict[str, Any]:
    (instance,) = run["instances"]
    return instance  # type: ignore[no-any-return]


def _serve_one_agent(fleet: Fleet, *agent_args: str) -> None:
    fleet.start_ts("ts-1")
    fleet.apply_policy("Lab", "pc-*", ["ts-1"])
    fleet.start_agent("pc-1", *agent_args)
    fleet.wait_assigned(["pc-1"])


def test_copy_file_writes_the_verified_file_with_its_mode(fleet: Fleet, tmp_path: Path) -> None:
    # Given a file uploaded to the NS and an agent served by a task server
    stored = _upload(fleet, "motd")
    assert stored["sha256"] == SHA256 and stored["size"] == len(CONTENT)
    _serve_one_agent(fleet)
    target = tmp_path / "out" / "motd"
    target.parent.mkdir()
    _copy_task(fleet, "copy motd", "motd", target)

    # When a copy-file task runs on the agent
    run = fleet.wait_run(fleet.run("copy motd", ["pc-1"]))

    # Then the file is there, whole, with its mode, and the task server cached it by SHA-256
    assert _one(run)["state"] == "Succeeded", _one(run)
    assert hashlib.sha256(target.read_bytes()).hexdigest() == SHA256
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert SHA256 in _one(run)["output"]
    cached = fleet.servers["ts-1"].data_dir / "files" / SHA256
    assert cached.read_bytes() == CONTENT
    # and no temporary file is left beside the target
    assert sorted(p.name for p in target.parent.iterdir()) == ["motd"]
    # and the file is listed with the task that uses it, and cannot be removed meanwhile
    (row,) = fleet.api.get("/api/files")
    assert row["used_by"] == ["copy motd"]
    try:
        fleet.api.call("DELETE", "/api/files/motd")
        raise AssertionError("a file a task uses was removed")
    except ApiError as exc:
        assert exc.status == 409


def test_a_corrupted_cache_entry_is_dropped_and_fetched_again(fleet: Fleet, tmp_path: Path) -> None:
    # Given a task server that has cached a file for a first copy
    _upload(fleet, "tool.cfg")
    _serve_one_agent(fleet)
    first, second = tmp_path / "first.cfg", tmp_path / "second.cfg"
    _copy_task(fleet, "copy 1", "tool.cfg", first)
    _copy_task(fleet, "copy 2", "tool.cfg", second)
    assert _one(fleet.wait_run(fleet.run("copy 1", ["pc-1"])))["state"] == "Succeeded"
    cached = fleet.servers["ts-1"].data_dir / "files" / SHA256

    # When the cached copy is corrupted on the task server's disk
    corrupted = b"X" + CONTENT[1:]
    cached.write_bytes(corrupted)

    # Then the next copy gets the true file: the task server served no corrupted byte
    run = fleet.wait_run(fleet.run("copy 2", ["pc-1"]))
    assert _one(run)["state"] == "Succeeded", _one(run)
    assert second.read_bytes() == CONTENT
    assert cached.read_bytes() == CONTENT  # fetched again from the NS
    assert "does not match its SHA-256: dropped" in fleet.logs()


def test_a_corrupted_cache_is_refused_when_no_true_copy_can_be_had(
    fleet: Fleet, db_url: str, tmp_path: Path
) -> None:
    # Given a cached file, and then both the cache and the NS's stored copy corrupted
    _upload(fleet, "tool.cfg")
    _serve_one_agent(fleet)
    first, second = tmp_path / "first.cfg", tmp_path / "second.cfg"
    _copy_task(fleet, "copy 1", "tool.cfg", first)
    _copy_task(fleet, "copy 2", "tool.cfg", second)
    assert _one(fleet.wait_run(fleet.run("copy 1", ["pc-1"])))["state"] == "Succeeded"
    cached = fleet.servers["ts-1"].data_dir / "files" / SHA256
    cached.write_bytes(b"X" + CONTENT[1:])
    asyncio.run(_corrupt_stored_copy(db_url))

    # When the file is copied again
    run = fleet.wait_run(fleet.run("copy 2", ["pc-1"]))

    # Then the task server refuses to serve it, the instance fails saying so, and
    # nothing is written on the computer
    instance = _one(run)
    assert instance["state"] == "Failed", instance
    assert "refused" in instance["output"] and "nothing written" in instance["output"]
    assert not second.exists()
    assert not cached.exists()  # the corrupted entry was dropped, not kept
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


async def _corrupt_stored_copy(db_url: str) -> None:
    engine = database.create_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                update(FileChunk).where(FileChunk.seq == 0).values(data=b"Y" * len(CONTENT))
            )
    finally:
        await engine.dispose()


def test_power_control_in_test_mode_records_the_restart(fleet: Fleet, tmp_path: Path) -> None:
    # Given an agent in power-control test mode
    record = tmp_path / "power.jsonl"
    _serve_one_agent(fleet, "--power-test-file", str(record))
    fleet.api.post(
        "/api/tasks/power-control",
        {"name": "patch night", "action": "restart", "delay_s": 300, "message": "Patch night"},
    )

    # When a restart with a delay and a message runs on it
    run = fleet.wait_run(fleet.run("patch night", ["pc-1"]))

    # Then it recorded the platform's restart command instead of running it
    assert _one(run)["state"] == "Succeeded", _one(run)
    (line,) = [json.loads(x) for x in record.read_text().splitlines()]
    assert line["action"] == "restart" and line["delay_s"] == 300
    assert line["message"] == "Patch night"
    assert line["commands"] == [["shutdown", "-r", "+5", "Patch night"]]
    assert "test mode" in _one(run)["output"]


def test_bad_power_control_and_copy_file_tasks_are_refused_at_creation(fleet: Fleet) -> None:
    for path, body, field in [
        ("power-control", {"name": "p", "action": "hibernate"}, "action"),
        ("power-control", {"name": "p", "action": "restart", "delay_s": -1}, "delay_s"),
        ("power-control", {"name": "p", "action": "restart", "message": "a\nb"}, "message"),
        ("copy-file", {"name": "c", "file": "none", "path": "/tmp/x"}, None),
    ]:
        try:
            fleet.api.post(f"/api/tasks/{path}", body)
            raise AssertionError(f"{body} accepted")
        except ApiError as exc:
            assert exc.status in (400, 404), exc
            if field is not None:
                assert exc.body.get("field") == field or field in exc.body["message"], exc.body
    _upload(fleet, "f")
    try:
        fleet.api.post("/api/tasks/copy-file", {"name": "c", "file": "f", "path": "relative/x"})
        raise AssertionError("a relative path was accepted")
    except ApiError as exc:
        assert exc.status == 400 and exc.body["field"] == "path"
    assert [t["name"] for t in fleet.api.get("/api/tasks") if t["name"] in ("p", "c")] == []


def test_inventory_updates_facts_and_a_dynamic_collection(fleet: Fleet) -> None:
    # Given a collection of computers whose fact 'role' is 'web', and an agent without it
    web = fleet.api.post("/api/collections", {"name": "Web", "rules": {"fact": {"role": "web"}}})
    _serve_one_agent(fleet)
    # (it sent its inventory once enrolled)
    computer = wait_until(
        lambda: (c := fleet.computer("pc-1"))["inventory_at"] and c, 30, "first inventory"
    )
    assert computer["facts"]["cpu_count"] == str(os.cpu_count())
    assert int(computer["facts"]["memory_bytes"]) > 0 and computer["facts"]["hostname"]
    assert computer["inventory"]["uptime_s"] > 0 and computer["inventory"]["disk_free_bytes"] > 0
    assert _members(fleet, web["id"]) == []

    # When its custom facts change and an Inventory task runs
    facts_file = fleet.root / "agents" / "pc-1" / "facts.json"
    facts_file.write_text(json.dumps({"role": "web"}))
    run = fleet.wait_run(fleet.run("Inventory", ["pc-1"]))

    # Then the NS stores the new fact and the dynamic collection gains the computer
    assert _one(run)["state"] == "Succeeded", _one(run)
    assert fleet.computer("pc-1")["facts"]["role"] == "web"
    assert _members(fleet, web["id"]) == ["pc-1"]


def _members(fleet: Fleet, collection_id: int) -> list[str]:
    return [m["name"] for m in fleet.api.get(f"/api/collections/{collection_id}")["members"]]


def test_copy_file_from_the_ns_when_it_serves_the_agent(fleet: Fleet, tmp_path: Path) -> None:
    # Given an agent with no task server to go to: the NS serves it (R3's last step)
    _upload(fleet, "motd")
    fleet.start_agent("pc-1")
    assert fleet.wait_assigned(["pc-1"])["pc-1"]["assign_step"] == "ns-fallback"
    target = tmp_path / "motd"
    _copy_task(fleet, "copy motd", "motd", target, mode="0600")

    # When a copy-file task runs on it, the agent fetches the file from the NS
    run = fleet.wait_run(fleet.run("copy motd", ["pc-1"]))

    # Then it is written, verified, with its mode
    assert _one(run)["state"] == "Succeeded", _one(run)
    assert target.read_bytes() == CONTENT
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
