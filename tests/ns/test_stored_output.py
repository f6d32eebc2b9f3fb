"""The NS's own cap on stored output (ns serve --max-output): longer output is cut with the
truncation marker when the status is applied, shorter output is kept as it came."""

from __future__ import annotations

import pytest

from taskfleet.ns import status_rows
from taskfleet.protocol.fields import TRUNCATION_MARKER
from taskfleet.protocol.messages import InstanceState, StatusEvent


def finished_with(output: str) -> str | None:
    row = status_rows.Row(1, 1, 1, InstanceState.RUNNING, 1.0, 1.0, 1)
    row.apply(StatusEvent("ev-1", 1, 1, "Succeeded", 2.0, 0, output))
    assert row.finished is not None
    return row.finished[2]


def test_output_over_the_ns_cap_is_cut_with_the_marker(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an NS started with --max-output 1KiB
    monkeypatch.setattr(status_rows, "stored_output_limit", 1024)
    # When an instance ends with 5000 characters of output
    stored = finished_with("o" * 5000)
    # Then 1 KiB is stored, and the marker says how much was not
    assert stored == "o" * 1024 + TRUNCATION_MARKER.format(dropped=5000 - 1024)
    # and output within the cap is stored as it came
    assert finished_with("short") == "short"
