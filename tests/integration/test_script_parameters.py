"""Run-script tasks with real agents: placeholders, parameters, secrets, options (issue 9).

The NS checks declarations and values; the agent fills in placeholders with its own
facts, runs the script with its options, and masks secret values in what it reports.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from taskfleet.protocol.templates import SECRET_MASK
from tests.fleet import ApiError, Fleet

AGENTS = ["pc-1", "pc-2"]
SECRET = "s3cr3t-Value-41"
# The script proves it got the secret by its hash: the secret itself must not be in
# the task, which is stored in plain text.
SECRET_HASH = hashlib.sha256(SECRET.encode()).hexdigest()
SCRIPT = f"""\
echo "name={{{{computer.name}}}} ip={{{{computer.ip}}}} run={{{{run.id}}}} who={{{{param.who}}}} \
machine={{{{fact.machine}}}} count={{{{param.count}}}}"
echo "printed: {{{{param.token}}}} env: $TOKEN"
test "$TOKEN" = "{{{{param.token}}}}" && \
  test "$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)" = "{SECRET_HASH}" && \
  echo "secret received"
echo "dir=$(pwd) greeting=$GREETING"
exit 3
"""


def cli(fleet: Fleet, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TASKFLEET_NS": fleet.ns_url,
        "TASKFLEET_CREDENTIAL": str(fleet.credential_file),
    }
    return subprocess.run(
        [sys.executable, "-m", "taskfleet", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def shown_json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)


def database_text(fleet: Fleet) -> str:
    """Everything the NS database holds, as text (SQLite file bytes or a pg_dump)."""
    url = urlparse(fleet.db_url)
    if url.scheme == "sqlite":
        path = Path(fleet.db_url.removeprefix("sqlite:///"))
        return "".join(
            p.read_bytes().decode("latin-1")
            for p in (path, path.with_name(path.name + "-wal"))
            if p.exists()
        )
    if shutil.which("pg_dump") is None:
        pytest.skip("pg_dump is not installed")
    return subprocess.run(
        [
            "pg_dump",
            "-h",
            url.hostname or "",
            "-p",
            str(url.port or 5432),
            "-U",
            "postgres",
            url.path.lstrip("/"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def start(fleet: Fleet) -> None:
    fleet.start_ts("ts-a")
    fleet.apply_policy("Lab", "pc-*", ["ts-a"])
    for name in AGENTS:
        fleet.start_agent(name)
    fleet.wait_assigned(AGENTS)


def greet_task(fleet: Fleet, workdir: Path) -> dict[str, Any]:
    body = {
        "name": "greet",
        "script": SCRIPT,
        "timeout_s": 60,
        "working_dir": str(workdir),
        "env": {"TOKEN": "{{param.token}}", "GREETING": "hello {{param.who}}"},
        "success_codes": [0, 3],
        "parameters": [
            {"name": "who", "required": True},
            {"name": "count", "type": "integer", "default": 2},
            {"name": "token", "secret": True, "required": True},
        ],
    }
    task: dict[str, Any] = fleet.api.post("/api/tasks", body)
    return task


def test_placeholders_options_and_a_secret_end_to_end(fleet: Fleet, tmp_path: Path) -> None:
    # Given two agents and a task with parameters, options and a secret
    start(fleet)
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    greet_task(fleet, workdir)

    # When it runs with the parameters' values
    run_id = fleet.api.post(
        "/api/runs",
        {"task": "greet", "targets": ["Lab"], "params": {"who": "world", "token": SECRET}},
    )["id"]
    run = fleet.wait_run(run_id)

    # Then every computer got its own values, and return code 3 counts as success
    assert run["counts"] == {"Succeeded": 2}, run
    for instance in run["instances"]:
        name = instance["computer"]
        ip = fleet.computer(name)["addresses"][0].split("/")[0]
        lines = instance["output"].splitlines()
        assert lines[0] == (
            f"name={name} ip={ip} run={run_id} who=world machine={os.uname().machine} count=2"
        )
        # The script received the secret, in its text and environment, but its output
        # shows only the mask
        assert lines[1] == f"printed: {SECRET_MASK} env: {SECRET_MASK}"
        assert lines[2] == "secret received"
        assert lines[3] == f"dir={workdir} greeting=hello world"
        assert instance["return_code"] == 3

    # And the secret is nowhere an admin or the database can read it
    assert run["params"] == {"who": "world", "count": "2", "token": SECRET_MASK}
    shown = [
        shown_json(fleet.api.get(f"/api/runs/{run_id}")),
        shown_json(fleet.api.get("/api/runs")),
        shown_json(fleet.api.get("/api/tasks/greet")),
        shown_json(fleet.api.get("/api/audit", params={"limit": 500})),
        cli(fleet, "run-status", str(run_id)).stdout,
        cli(fleet, "run-status", str(run_id), "--json").stdout,
        database_text(fleet),
        fleet.logs(tail=100_000),
    ]
    for text in shown:
        assert SECRET not in text
    # nor on any disk of the fleet: NS data directory, task server, agents' state, logs
    for path in fleet.root.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET_MASK in shown[0]


def test_bad_parameters_and_placeholders_are_refused_before_anything_runs(
    fleet: Fleet, tmp_path: Path
) -> None:
    # Given a task with a required parameter
    start(fleet)
    greet_task(fleet, tmp_path)
    before = fleet.api.get("/api/runs")

    # When runs are made with a parameter missing, undeclared or mistyped
    cases = [
        ({"token": "x"}, "params.who"),
        ({"who": "a", "token": "x", "whom": "b"}, "params.whom"),
        ({"who": "a", "token": "x", "count": "many"}, "params.count"),
    ]
    for params, field in cases:
        with pytest.raises(ApiError) as refused:
            fleet.api.post("/api/runs", {"task": "greet", "targets": ["Lab"], "params": params})
        # Then each is a 400 naming the parameter, and no run was made
        assert refused.value.status == 400
        assert refused.value.body["field"] == field, refused.value.body
    assert fleet.api.get("/api/runs") == before

    # And the CLI says the same, before anything starts
    result = cli(fleet, "run", "greet", "--target", "Lab", "--param", "token=x")
    assert result.returncode != 0
    assert "params.who" in result.stderr and "required" in result.stderr

    # When a task uses an unknown placeholder or an undeclared parameter
    for script, bad in [("echo {{computer.nme}}", "computer.nme"), ("echo {{param.x}}", "param.x")]:
        with pytest.raises(ApiError) as refused:
            fleet.api.post("/api/tasks", {"name": "typo", "script": script})
        # Then saving it is refused, naming the script and the placeholder
        assert refused.value.status == 400
        assert refused.value.body["field"] == "script"
        assert bad in refused.value.body["message"]


def test_a_missing_interpreter_is_warned_about_and_fails_at_once(fleet: Fleet) -> None:
    # Given agents on Linux, which have no Windows PowerShell
    start(fleet)
    fleet.create_task("winonly", "Write-Output hi", interpreter="powershell", timeout_s=600)

    # When a run is previewed, and started from the CLI
    preview = fleet.api.post("/api/runs/preview", {"task": "winonly", "targets": ["Lab"]})
    result = cli(fleet, "run", "winonly", "--target", "Lab", "--json")

    # Then both warn how many and which targets lack it
    assert preview["computers"] == 2 and preview["lacking"] == 2
    assert preview["lacking_computers"] == AGENTS
    assert "2 target computers lack the 'powershell' interpreter (pc-1, pc-2)" in result.stderr
    # (the API's preview counts only the computers the exclusions leave)
    less = {"task": "winonly", "targets": ["Lab"], "exclude": ["pc-1"]}
    preview = fleet.api.post("/api/runs/preview", less)
    assert (preview["computers"], preview["lacking_computers"]) == (1, ["pc-2"])
    run_id = json.loads(result.stdout)["id"]

    # And the run fails at once (not after its 600 s timeout), saying why
    run = fleet.wait_run(run_id, timeout=30)
    assert run["counts"] == {"Failed": 2}
    for instance in run["instances"]:
        assert "interpreter 'powershell' is not installed" in instance["output"]

    # And a job with a step for it is warned about the same way
    fleet.create_task("posix", "true")
    fleet.api.post(
        "/api/jobs", {"name": "mixed", "steps": [{"task": "posix"}, {"task": "winonly"}]}
    )
    preview = fleet.api.post("/api/runs/preview", {"task": "mixed", "targets": ["pc-1"]})
    assert (preview["type"], preview["lacking"]) == ("job", 1)
    assert "an interpreter the job uses (powershell, sh)" in preview["warning"]


@pytest.mark.skipif(os.geteuid() != 0, reason="the agents must run as root to run as another user")
def test_run_as_another_user(fleet: Fleet) -> None:
    # Given agents running as root and a task that runs as nobody
    start(fleet)
    fleet.api.post("/api/tasks", {"name": "who", "script": "id -un", "run_as": "nobody"})

    # When it runs
    run = fleet.wait_run(fleet.run("who", ["Lab"]))

    # Then the script ran as that user
    assert run["counts"] == {"Succeeded": 2}, run
    assert {i["output"].strip() for i in run["instances"]} == {"nobody"}
