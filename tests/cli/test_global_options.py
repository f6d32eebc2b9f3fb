"""--ns, --credential and --json go anywhere on the line: before the command or after it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.fleet import Fleet


def bare_taskfleet(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with no TASKFLEET_NS or TASKFLEET_CREDENTIAL: only the options say where."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TASKFLEET_NS", "TASKFLEET_CREDENTIAL", "TASKFLEET_CA")
    }
    return subprocess.run(
        [sys.executable, "-m", "taskfleet", *args],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "200"},
        timeout=60,
        check=False,
    )


def test_global_options_before_or_after_the_command(fleet: Fleet) -> None:
    # Given an NS, its URL and the admin credential file
    url, credential = fleet.ns_url, str(fleet.credential_file)
    expected = bare_taskfleet("--ns", url, "--credential", credential, "run-list", "--json")
    assert expected.returncode == 0, expected.stderr
    runs = json.loads(expected.stdout)

    # When the global options are typed before, after, or on both sides of the command
    for args in [
        ["--ns", url, "--credential", credential, "--json", "run-list"],
        ["run-list", "--ns", url, "--json", "--credential", credential],
        ["--json", "--ns", url, "run-list", "--credential", credential],
        ["--credential", credential, "run-list", "--json", "--ns", url],
    ]:
        result = bare_taskfleet(*args)

        # Then each is the same command, with the same JSON
        assert result.returncode == 0, (args, result.stderr)
        assert json.loads(result.stdout) == runs, args


def test_global_options_between_a_group_and_its_command(fleet: Fleet) -> None:
    # Given an NS
    url, credential = fleet.ns_url, str(fleet.credential_file)

    # When --json is given to a group, before the command that prints the table
    tasks = bare_taskfleet("task", "--json", "list", "--ns", url, "--credential", credential)

    # Then the command prints JSON (the built-in tasks)
    assert tasks.returncode == 0, tasks.stderr
    assert json.loads(tasks.stdout)

    # And a command without a --json of its own takes the global one after it too
    shown = bare_taskfleet("ca", "show", "--json", "--ns", url, "--credential", credential)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["fingerprint"] == fleet.fingerprint


def test_the_option_typed_after_the_command_wins(fleet: Fleet) -> None:
    # Given an --ns before the command where no NS answers, and the real one after it
    credential = str(fleet.credential_file)
    nowhere = "http://127.0.0.1:9"
    args = ["--ns", nowhere, "--credential", credential, "run-list", "--ns", fleet.ns_url]

    # When the command runs, Then it reaches the NS typed after it
    result = bare_taskfleet(*args, "--json")
    assert result.returncode == 0, result.stderr

    # And without the later --ns, the earlier one is used (and fails clearly)
    failed = bare_taskfleet("--ns", nowhere, "--credential", credential, "run-list")
    assert failed.returncode == 1
    assert failed.stderr.startswith(f"taskfleet: cannot reach the NS at {nowhere}")
