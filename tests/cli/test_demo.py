"""`taskfleet demo --once`: the whole product here; exit 0 only if every computer succeeded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from taskfleet.protocol import pki


@pytest.mark.timeout(180)
def test_demo_once_runs_on_every_agent_and_leaves_nothing_running(tmp_path: Path) -> None:
    # When the demo runs once with three agents
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "taskfleet",
            "demo",
            "--once",
            "--agents",
            "3",
            "--dir",
            str(tmp_path / "d"),
        ],
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    # Then every computer succeeded, each printing its name and task server, and the URL is shown
    assert result.returncode == 0, result.stdout + result.stderr
    for n in (1, 2, 3):
        assert f"computer demo-pc-0{n} ran run 1 via task server ts-east" in result.stdout
    assert "NS URL: https://127.0.0.1:" in result.stdout
    # over TLS with the NS's own CA, whose fingerprint it printed for the nodes
    ca = (tmp_path / "d" / "ns" / "ca" / "ca.crt").read_bytes()
    assert pki.fingerprint(x509.load_pem_x509_certificate(ca)) in result.stdout
    assert (tmp_path / "d" / "agents" / "demo-pc-01" / pki.CERT_FILE).exists()
    assert "all demo processes stopped" in result.stdout
    # And no demo process is left behind
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert str(tmp_path) not in ps
