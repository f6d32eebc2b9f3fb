"""The agent writes a copy-file task's file only once its size and SHA-256 are verified."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import httpx

from taskfleet.agent import copy_file
from taskfleet.protocol.messages import InstanceState, WorkItem

CONTENT = b"hello\n" * 50_000
SHA = hashlib.sha256(CONTENT).hexdigest()


def item(path: Path, sha: str = SHA, size: int = len(CONTENT)) -> WorkItem:
    params = {"file": "f", "sha256": sha, "size": size, "path": str(path), "mode": 0o600}
    return WorkItem(1, 1, "copy-file", params, 30.0)


def server(body: bytes, status: int = 200) -> httpx.AsyncClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if status != 200:
            return httpx.Response(status, json={"error": "forbidden", "message": "not yours"})
        return httpx.Response(200, content=body)

    return httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://ts")


def test_verify_names_what_is_wrong() -> None:
    assert copy_file.verify(SHA, 3, SHA, 3) is None
    assert "bytes" in (copy_file.verify(SHA, 3, SHA, 4) or "")
    assert "SHA-256" in (copy_file.verify(SHA, 3, "0" * 64, 3) or "")


async def test_a_verified_file_is_written_with_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    result = await copy_file.run(item(target), server(CONTENT))
    assert result.state == InstanceState.SUCCEEDED, result
    assert target.read_bytes() == CONTENT
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


async def test_a_corrupted_download_is_never_written(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"the old file")
    corrupted = b"X" + CONTENT[1:]
    result = await copy_file.run(item(target), server(corrupted))
    assert result.state == InstanceState.FAILED
    assert "SHA-256" in result.output and "not written" in result.output
    assert target.read_bytes() == b"the old file"  # untouched
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]  # no temporary file left


async def test_a_longer_download_is_cut_off_and_refused(tmp_path: Path) -> None:
    result = await copy_file.run(item(tmp_path / "x", size=10), server(CONTENT))
    assert result.state == InstanceState.FAILED and "more than" in result.output
    assert list(tmp_path.iterdir()) == []


async def test_a_refusal_and_a_missing_directory_say_why(tmp_path: Path) -> None:
    refused = await copy_file.run(item(tmp_path / "x"), server(b"", status=403))
    assert refused.state == InstanceState.FAILED and "not yours" in refused.output
    missing = await copy_file.run(item(tmp_path / "no" / "x"), server(CONTENT))
    assert missing.state == InstanceState.FAILED and "does not exist" in missing.output
