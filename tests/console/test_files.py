"""The files page: upload a file for copy-file tasks, see its SHA-256, remove it."""

from __future__ import annotations

import hashlib
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.console.conftest import log_in, no_horizontal_scroll, screenshot
from tests.fleet import Fleet


def test_upload_list_and_remove_a_file(console_fleet: Fleet, page: Page, tmp_path: Path) -> None:
    fleet = console_fleet
    source = tmp_path / "tool.cfg"
    source.write_bytes(b"setting = 1\n" * 100)
    log_in(page, fleet)
    page.get_by_role("link", name="Files").click()
    expect(page.get_by_text("No files yet.")).to_be_visible()

    # When the form is sent without a file, the error is by that field
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#file-file-error")).to_contain_text("choose a file")

    # When a file is uploaded under a name of its own
    page.get_by_label("File (at most").set_input_files(str(source))
    page.get_by_label("Name (default").fill("tool config")
    page.get_by_role("button", name="Upload").click()

    # Then it is listed with its size and SHA-256, as the API has it
    row = page.locator("tr[data-file='tool config']")
    expect(row).to_contain_text(hashlib.sha256(source.read_bytes()).hexdigest())
    expect(row).to_contain_text("1200 bytes")
    (stored,) = fleet.api.get("/api/files")
    assert stored["name"] == "tool config" and stored["created_by"] == "admin"
    assert no_horizontal_scroll(page)
    screenshot(page, "30-files")

    # When the same name is uploaded again, the clash is said and nothing changes
    page.get_by_label("File (at most").set_input_files(str(source))
    page.get_by_label("Name (default").fill("tool config")
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#file-name-error")).to_contain_text("exists already")
    assert len(fleet.api.get("/api/files")) == 1

    # When it is removed (confirmed), it is gone
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Remove tool config").click()
    expect(page.get_by_text("No files yet.")).to_be_visible()
    assert fleet.api.get("/api/files") == []
