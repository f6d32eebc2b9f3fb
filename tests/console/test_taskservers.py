"""Task servers in the console: approve a pending one; a viewer sees but cannot change (R1)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.console.conftest import log_in, no_horizontal_scroll, screenshot
from tests.fleet import ApiError, Fleet


def approval(fleet: Fleet, name: str) -> str:
    rows = {r["name"]: r for r in fleet.api.get("/api/taskservers")}
    return str(rows[name]["approval"])


def test_admin_approves_a_pending_task_server(console_fleet: Fleet, page: Page) -> None:
    fleet = console_fleet
    # Given an approved task server and one that just registered
    fleet.start_ts("ts-old")
    fleet.start_ts("ts-new", approve=False)
    log_in(page, fleet)

    # Then the dashboard says one is waiting, and the task servers page lists it first
    expect(page.get_by_text("1 task server waiting for approval")).to_be_visible()
    page.get_by_role("link", name="Task servers", exact=True).click()
    rows = page.locator("table.taskservers tbody tr")
    expect(rows.first).to_have_attribute("data-name", "ts-new")
    expect(rows.first).to_have_class("pending")
    assert no_horizontal_scroll(page)
    screenshot(page, "04-taskservers-pending")

    # When the admin clicks Approve but cancels the confirmation, nothing changes
    new_row = page.locator("tr[data-name='ts-new']")
    page.once("dialog", lambda dialog: dialog.dismiss())
    new_row.get_by_role("button", name="Approve").click()
    expect(new_row.locator(".approval")).to_have_text("pending")
    assert approval(fleet, "ts-new") == "pending"

    # When the admin approves and confirms
    questions: list[str] = []

    def accept(dialog: object) -> None:
        questions.append(dialog.message)  # type: ignore[attr-defined]
        dialog.accept()  # type: ignore[attr-defined]

    page.once("dialog", accept)
    new_row.get_by_role("button", name="Approve").click()

    # Then it is approved, here and in the API, and becomes available
    expect(page.get_by_role("status").filter(has_text="ts-new is approved")).to_be_visible()
    assert questions and "Approve task server ts-new?" in questions[0]
    assert approval(fleet, "ts-new") == "approved"
    fleet.wait_available("ts-new")
    screenshot(page, "05-taskservers-approved")

    # And the audit log says who did it
    audit = fleet.api.get("/api/audit", params={"action": "taskserver.approve"})
    assert any(e["actor"] == "admin" and e["target"] == "ts-new" for e in audit)


def test_viewer_sees_task_servers_but_cannot_change_them(console_fleet: Fleet, page: Page) -> None:
    fleet = console_fleet
    # Given a pending task server and a viewer with a console password
    fleet.start_ts("ts-new", approve=False)
    viewer = fleet.api.post(
        "/api/users", {"name": "vera", "role": "viewer", "password": "viewer-password-1"}
    )
    log_in(page, fleet, "vera", "viewer-password-1")

    # Then the viewer sees the task server and no button to change it
    page.goto(f"{fleet.ns_url}/console/taskservers")
    expect(page.locator("tr[data-name='ts-new'] .approval")).to_have_text("pending")
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    expect(page.get_by_role("button", name="Revoke")).to_have_count(0)
    screenshot(page, "06-taskservers-viewer")

    # When the viewer posts the approval anyway, with the session's own CSRF token
    csrf = page.locator("form.who input[name='csrf']").input_value()
    status = page.evaluate(
        """async ([url, csrf]) => (await fetch(url, {method: "POST",
               headers: {"X-CSRF-Token": csrf}})).status""",
        [f"{fleet.ns_url}/console/taskservers/ts-new/approve", csrf],
    )
    # Then the console refuses it, and so does the API with the viewer's credential
    assert status == 403
    with pytest.raises(ApiError) as refused:
        _as_viewer(fleet, viewer["credential"])
    assert refused.value.status == 403
    assert approval(fleet, "ts-new") == "pending"


def _as_viewer(fleet: Fleet, credential: str) -> None:
    response = fleet.api.client.post(
        "/api/taskservers/ts-new/approve", headers={"Authorization": f"Bearer {credential}"}
    )
    if response.status_code >= 400:
        raise ApiError(response.status_code, response.json())


def test_a_change_without_the_csrf_token_is_refused(console_fleet: Fleet, page: Page) -> None:
    fleet = console_fleet
    fleet.start_ts("ts-new", approve=False)
    log_in(page, fleet)
    # A request from a page that does not know the session's CSRF token (the cookie alone)
    status = page.evaluate(
        """async (url) => (await fetch(url, {method: "POST"})).status""",
        f"{fleet.ns_url}/console/taskservers/ts-new/approve",
    )
    assert status == 403
    assert approval(fleet, "ts-new") == "pending"
