"""Cancel in the console: one computer's instance, then the whole run (ns.cancel), and
the run form's expiry (ns.expiry)."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.console.conftest import log_in, screenshot, seed
from tests.fleet import Fleet


def test_cancel_an_instance_then_the_run(console_fleet: Fleet, page: Page) -> None:
    fleet = console_fleet
    # Given a run on two computers that are offline, so both wait (Pending)
    seed(fleet, 2)
    fleet.create_task("patch", "echo patched")
    run_id = fleet.run("patch", ["lab-000", "lab-001"])
    log_in(page, fleet)
    page.goto(f"{fleet.ns_url}/console/runs/{run_id}")
    expect(page.locator("#run-expiry")).to_contain_text("Expired")
    page.on("dialog", lambda dialog: dialog.accept())  # the confirmation: yes

    # When the admin cancels lab-000's instance
    page.locator("tr[data-computer='lab-000']").get_by_role("button", name="Cancel").click()

    # Then it is withdrawn (Canceled, saying who), and lab-001 still waits
    expect(page.get_by_role("status")).to_contain_text("1 pending withdrawn")
    row = page.locator("tr[data-computer='lab-000']")
    expect(row.locator(".state")).to_have_text("Canceled")
    expect(row.locator(".reason")).to_have_text("canceled by admin")
    expect(row.get_by_role("button", name="Cancel")).to_have_count(0)
    expect(page.locator("tr[data-computer='lab-001'] .state")).to_have_text("Pending")
    screenshot(page, "30-run-instance-canceled")

    # When the admin cancels the run
    page.get_by_role("button", name="Cancel run").click()

    # Then every instance is Canceled, the run is done, and no Cancel button is left
    expect(page.locator("tr[data-computer='lab-001'] .state")).to_have_text("Canceled")
    expect(page.locator("#run-progress")).to_contain_text("Done")
    expect(page.get_by_role("button", name="Cancel run")).to_have_count(0)
    run = fleet.api.get(f"/api/runs/{run_id}")
    assert run["counts"] == {"Canceled": 2}
    assert len(fleet.api.get("/api/audit", params={"action": "run.cancel"})) == 2


def test_the_run_form_takes_an_expiry_and_refuses_a_bad_one(
    console_fleet: Fleet, page: Page
) -> None:
    fleet = console_fleet
    seed(fleet, 1)
    fleet.create_task("patch", "echo patched")
    log_in(page, fleet)
    page.goto(f"{fleet.ns_url}/console/tasks/patch/run")
    page.get_by_label("Computers (comma-separated)").fill("lab-000")
    # When the expiry is not a duration, Then the form says so and starts nothing
    page.locator("#expires_in").fill("soon")
    page.get_by_role("button", name="Start run").click()
    expect(page.locator("form .field-error")).to_contain_text("not a duration")
    expect(page.locator("#expires_in")).to_have_value("soon")
    assert fleet.api.get("/api/runs")["runs"] == []
    # When it is 2h, Then the run starts and expires in two hours
    page.locator("#expires_in").fill("2h")
    page.get_by_role("button", name="Start run").click()
    page.wait_for_url("**/console/runs/*")
    run = fleet.api.get("/api/runs")["runs"][0]
    assert abs(run["expires_at"] - run["created_at"] - 7200) < 5
