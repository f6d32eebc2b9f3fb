"""Fixtures: a database URL per backend (SQLite file, PostgreSQL) and a real fleet of processes."""

from __future__ import annotations

import inspect
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fleet import Fleet

PG_HOST = "127.0.0.1"
PG_PORT = 5432


def postgres_reachable() -> bool:
    result = subprocess.run(
        ["pg_isready", "-q", "-h", PG_HOST, "-p", str(PG_PORT)], capture_output=True, check=False
    )
    return result.returncode == 0


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-h", PG_HOST, "-p", str(PG_PORT), "-U", "postgres", "-d", "postgres", "-qc", sql],
        check=True,
        capture_output=True,
    )


SQLITE = "sqlite"
POSTGRES = pytest.param("postgres", marks=pytest.mark.postgres)


def _parametrizes_db_url(metafunc: pytest.Metafunc) -> bool:
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", "")
        if "db_url" in (names.replace(" ", "").split(",") if isinstance(names, str) else names):
            return True
    return False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Which stores a test runs on, when it does not name them itself.

    A test that takes ``db_url`` itself tests storage or a service over it: it runs on
    SQLite and PostgreSQL alike. A scenario that only takes ``fleet`` (real processes)
    runs on SQLite, the embedded default, unless it is marked ``both_stores``: the
    scenarios whose path differs by store (delivery, status intake, schedules, jobs,
    run lifecycle) carry that mark. Running every scenario twice doubled the suite
    for little: the processes and HTTP are the same, and the SQL differences are the
    storage and service tests' to find.
    """
    if "db_url" not in metafunc.fixturenames or _parametrizes_db_url(metafunc):
        return
    direct = "db_url" in inspect.signature(metafunc.function).parameters
    both = direct or metafunc.definition.get_closest_marker("both_stores") is not None
    metafunc.parametrize("db_url", [SQLITE, POSTGRES] if both else [SQLITE], indirect=True)


@pytest.fixture
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a new PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ns.db'}"
        return
    try:
        reachable = postgres_reachable()
    except FileNotFoundError:
        reachable = False
    if not reachable:
        if os.environ.get("TASKFLEET_REQUIRE_POSTGRES"):
            pytest.fail(
                "PostgreSQL on 127.0.0.1:5432 is required here (TASKFLEET_REQUIRE_POSTGRES)"
            )
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    name = f"taskfleet_test_{uuid.uuid4().hex[:12]}"
    _psql(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def fleet(db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Fleet]:
    """An NS (started) on ``db_url``; the test starts task servers and agents.

    Over TLS with the NS's own CA, as in production, unless the test is marked
    ``plain_http``: tests that play agents by hand to probe something else (a
    stampede, open files, bad input) speak plain HTTP to an --insecure-http fleet.
    """
    f = Fleet(tmp_path / "fleet", db_url, tls=request.node.get_closest_marker("plain_http") is None)
    try:
        f.start_ns()
        yield f
    finally:
        f.stop()
