"""'taskfleet taskserver set': an admin's client limit and heartbeat period, until cleared."""

from __future__ import annotations

import json

from tests.cli.test_cli import taskfleet
from tests.fleet import Fleet
from tests.integration.test_taskserver_settings import register


def test_admin_sets_and_clears_a_task_servers_limits(fleet: Fleet) -> None:
    # Given a task server that reports a client limit of 5 and a 10 s heartbeat
    register(fleet, "ts-cli", client_limit=5, heartbeat=10).close()

    # When the admin sets both from the CLI
    done = taskfleet(
        fleet, "taskserver", "set", "ts-cli", "--client-limit", "2", "--heartbeat", "12"
    )
    # Then it says what is in effect and what the task server reports
    assert done.returncode == 0, done.stderr
    assert "client limit 2 (admin), heartbeat every 12s (admin)" in done.stdout
    assert "it reports 5 and 10s" in done.stdout
    # ... and the list marks the values an admin set
    listed = taskfleet(fleet, "taskserver", "list").stdout
    assert "2 (admin)" in listed and "12s (admin)" in listed

    # When the admin sets a heartbeat period the task server cannot keep up with
    short = taskfleet(fleet, "taskserver", "set", "ts-cli", "--heartbeat", "2")
    # Then it is set, with a warning on stderr
    assert short.returncode == 0
    assert "warning: ts-cli heartbeats every 10s" in short.stderr

    # When the admin clears the client limit only (as JSON)
    cleared = taskfleet(fleet, "taskserver", "set", "ts-cli", "--clear-client-limit", "--json")
    row = json.loads(cleared.stdout)
    # Then the task server's own limit applies again; the heartbeat stays the admin's
    assert (row["client_limit"], row["admin_client_limit"]) == (5, None)
    assert (row["heartbeat_period_s"], row["admin_heartbeat_period_s"]) == (2, 2)


def test_taskserver_set_refuses_what_makes_no_sense(fleet: Fleet) -> None:
    register(fleet, "ts-cli", client_limit=5, heartbeat=10).close()
    for args, says in [
        ([], "nothing to set"),
        (["--client-limit", "3", "--clear-client-limit"], "not both"),
        (["--client-limit", "0"], "client_limit must be between 1 and 1,000,000"),
        (["--heartbeat", "-1"], "heartbeat_period_s must be between"),
    ]:
        result = taskfleet(fleet, "taskserver", "set", "ts-cli", *args)
        assert result.returncode != 0, args
        assert says in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    missing = taskfleet(fleet, "taskserver", "set", "no/such", "--client-limit", "3")
    assert "no task server 'no/such'" in missing.stderr
