"""A viewer sees every page and can change nothing: no forms that change, and refusals if forced."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.console.conftest import log_in, no_horizontal_scroll
from tests.fleet import Fleet

PAGES = ["/", "/computers", "/collections", "/sites", "/taskservers", "/policy",
         "/agent-config", "/tasks", "/runs", "/audit", "/collections/Lab"]  # fmt: skip
CHANGES = ["/taskservers/ts-a/revoke", "/policy/apply", "/agent-config/apply",
           "/tasks/1/run", "/collections", "/sites", "/collections/Lab/add"]  # fmt: skip


def test_viewer_reads_everything_and_changes_nothing(console_fleet: Fleet, page: Page) -> None:
    fleet = console_fleet
    # Given a fleet with a bit of everything, and a viewer
    fleet.start_ts("ts-a")
    fleet.apply_policy("Lab", "pc-*", ["ts-a"])
    fleet.create_task("hello", "echo hello")
    fleet.api.post(
        "/api/users", {"name": "vera", "role": "viewer", "password": "viewer-password-1"}
    )
    log_in(page, fleet, "vera", "viewer-password-1")

    # Then every page opens, fits 1280 px, and offers no form that changes anything
    for path in PAGES:
        response = page.goto(f"{fleet.ns_url}/console{path}")
        assert response is not None and response.status == 200, path
        posting = page.locator("form[method='post']:not(.who)")
        expect(posting).to_have_count(0)
        assert no_horizontal_scroll(page), path

    # ... and a computer's page shows it no hardware id (identity secrets are for admins)
    page.goto(f"{fleet.ns_url}/console/computers/ts-a")
    expect(page.locator("#collections")).to_be_visible()
    expect(page.get_by_text("Hardware id")).to_have_count(0)

    # When the viewer posts changes anyway, with a valid CSRF token, each is refused
    csrf = page.locator("form.who input[name='csrf']").input_value()
    for path in CHANGES:
        status = page.evaluate(
            """async ([url, csrf]) => (await fetch(url, {method: "POST",
                   headers: {"X-CSRF-Token": csrf}})).status""",
            [f"{fleet.ns_url}/console{path}", csrf],
        )
        assert status == 403, path
    assert fleet.api.get("/api/runs")["runs"] == []
    assert [r["approval"] for r in fleet.api.get("/api/taskservers")] == ["approved"]
