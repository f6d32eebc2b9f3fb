"""Users and roles through the CLI: the same roles bind the REST API, the CLI and the console."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.cli.test_cli import taskfleet
from tests.fleet import Fleet


def as_user(
    fleet: Fleet, credential: str, tmp: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    path = tmp / "user.credential"
    path.write_text(credential)
    return taskfleet(fleet, "--credential", str(path), *args)


def test_roles_bind_the_cli_and_api(fleet: Fleet, tmp_path: Path) -> None:
    # Given a viewer and an operator made by the first admin
    fleet.start_ts("ts-a", approve=False)
    assert taskfleet(fleet, "collection", "create", "Lab", "--name-pattern", "pc-*").returncode == 0
    viewer = json.loads(
        taskfleet(fleet, "user", "create", "vera", "--role", "viewer", "--json").stdout
    )
    operator = json.loads(
        taskfleet(fleet, "user", "create", "otto", "--role", "operator", "--json").stdout
    )
    listed = taskfleet(fleet, "user", "list").stdout
    assert "vera" in listed and "viewer" in listed and "no password" in listed

    # When the viewer reads, then tries to change something
    seen = as_user(fleet, viewer["credential"], tmp_path, "taskserver", "list", "--json")
    refused = as_user(fleet, viewer["credential"], tmp_path, "taskserver", "approve", "ts-a")

    # Then reading works and the change is refused with a reason, and nothing changed
    assert seen.returncode == 0 and json.loads(seen.stdout)[0]["approval"] == "pending"
    assert refused.returncode == 1
    assert "vera has role viewer; this needs role admin" in refused.stderr
    assert (
        json.loads(taskfleet(fleet, "taskserver", "list", "--json").stdout)[0]["approval"]
        == "pending"
    )

    # And an operator may run a task (no computer here: the run has no instances) but not
    # write one or manage users: a script task is code that runs on every target computer
    assert taskfleet(fleet, "task", "create", "t", "--script", "true").returncode == 0
    ran = as_user(fleet, operator["credential"], tmp_path, "run", "t", "--target", "Lab")
    assert "needs role" not in ran.stderr
    for args in (["task", "create", "u", "--script", "true"], ["user", "list"]):
        denied = as_user(fleet, operator["credential"], tmp_path, *args)
        assert denied.returncode == 1 and "otto has role operator" in denied.stderr

    # When the viewer is promoted, then disabled
    assert taskfleet(fleet, "user", "set-role", "vera", "admin").returncode == 0
    assert (
        as_user(fleet, viewer["credential"], tmp_path, "taskserver", "approve", "ts-a").returncode
        == 0
    )
    assert taskfleet(fleet, "user", "disable", "vera").returncode == 0
    gone = as_user(fleet, viewer["credential"], tmp_path, "taskserver", "list")
    assert gone.returncode == 1 and "not recognised" in gone.stderr


def test_user_mistakes_get_one_line_reasons(fleet: Fleet) -> None:
    cases = [
        (["user", "create", "bad name!"], "user name 'bad name!'"),
        (["user", "create", "12345"], "not digits only"),
        (["user", "create", "x", "--role", "root"], "must be one of: viewer, operator, admin"),
        (["user", "set-role", "nobody", "viewer"], "no user 'nobody'"),
        (["user", "disable", "admin"], "admin is the last enabled admin"),
        (["user", "set-role", "admin", "viewer"], "admin is the last enabled admin"),
    ]
    for args, reason in cases:
        done = taskfleet(fleet, *args)
        assert done.returncode == 1, (args, done.stdout)
        assert reason in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    short = taskfleet(fleet, "user", "create", "pw", "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and "at least 10 characters" in short.stderr
    users = json.loads(taskfleet(fleet, "user", "list", "--json").stdout)
    assert [u["name"] for u in users] == ["admin"]
