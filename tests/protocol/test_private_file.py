"""One writer for secrets on disk: mode 0600, the whole file or the previous one."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from taskfleet.protocol.private_file import write_private, write_private_json


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_a_new_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    # Given a directory that does not exist yet
    path = tmp_path / "state" / "identity.json"

    # When a credential is written there
    written = write_private_json(path, {"credential": "tf1.x"})

    # Then the file holds it, mode 0600, and no temporary file is left beside it
    assert written == path
    assert json.loads(path.read_text()) == {"credential": "tf1.x"}
    assert _mode(path) == 0o600
    assert os.listdir(path.parent) == ["identity.json"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_an_existing_readable_file_is_replaced_by_a_private_one(tmp_path: Path) -> None:
    # Given a file others could read
    path = tmp_path / "admin.credential"
    path.write_text("old\n")
    path.chmod(0o644)

    # When it is written again, as text and then as bytes
    write_private(path, "new\n")
    assert path.read_text() == "new\n"
    write_private(path, b"\x00key")

    # Then it holds the new bytes, and only its owner can read it
    assert path.read_bytes() == b"\x00key"
    assert _mode(path) == 0o600
