"""Schedules and maintenance windows in the console: create with a mistake, pause,
resume, remove; a collection's windows with a mistake, then saved."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.console.conftest import log_in, screenshot, seed
from tests.fleet import Fleet


def test_add_a_schedule_with_a_mistake_then_pause_resume_and_remove_it(
    console_fleet: Fleet, page: Page
) -> None:
    fleet = console_fleet
    # Given computers in collection Lab and a task
    seed(fleet, 3)
    fleet.api.post("/api/collections", {"name": "Lab", "rules": {"name_pattern": "lab-*"}})
    fleet.create_task("nightly", "echo nightly")
    log_in(page, fleet)

    # When the operator adds a recurring schedule whose cron does not parse
    page.get_by_role("link", name="Schedules", exact=True).click()
    page.get_by_label("Task").select_option("nightly")
    page.get_by_label("Collections", exact=True).select_option("Lab")
    page.get_by_label("Exclude computers or collections (comma-separated)").fill("lab-001")
    page.get_by_label("Recurring, cron").check()
    page.get_by_label("Cron expression").fill("0 25 * * *")
    page.get_by_label("Time zone").fill("Europe/Berlin")
    page.get_by_label("Minimum computers done").fill("2")
    page.get_by_role("button", name="Add schedule").click()

    # Then the mistake shows next to the cron field, nothing typed is lost, nothing is stored
    expect(page.locator("#cron-error")).to_contain_text("does not parse")
    expect(page.get_by_label("Cron expression")).to_have_value("0 25 * * *")
    expect(page.get_by_label("Time zone")).to_have_value("Europe/Berlin")
    assert fleet.api.get("/api/schedules") == []

    # When the cron is corrected
    page.get_by_label("Cron expression").fill("0 3 * * *")
    page.get_by_role("button", name="Add schedule").click()

    # Then the schedule is listed, active, with its exclusion and next run
    expect(page.get_by_role("status").filter(has_text="Schedule 1 added")).to_be_visible()
    row = page.locator("tr[data-schedule='1']")
    expect(row).to_contain_text("minus lab-001")
    expect(row.locator(".state")).to_have_text("active")
    stored = fleet.api.get("/api/schedules/1")
    assert stored["cron"] == "0 3 * * *" and stored["timezone"] == "Europe/Berlin"
    assert stored["exclude"] == ["lab-001"] and stored["requirements"] == {"min_count": 2}
    screenshot(page, "20-schedules")

    # When it is paused, then resumed
    row.get_by_role("button", name="Pause").click()
    expect(page.locator("tr[data-schedule='1'] .state")).to_have_text("paused")
    assert fleet.api.get("/api/schedules/1")["paused"] is True
    page.locator("tr[data-schedule='1']").get_by_role("button", name="Resume").click()
    expect(page.locator("tr[data-schedule='1'] .state")).to_have_text("active")

    # When it is removed, it is gone
    page.get_by_role("button", name="Remove schedule 1").click()
    expect(page.locator("tr[data-schedule='1']")).to_have_count(0)
    assert fleet.api.get("/api/schedules") == []


def test_set_a_collections_maintenance_windows(console_fleet: Fleet, page: Page) -> None:
    fleet = console_fleet
    fleet.api.post("/api/collections", {"name": "Servers", "rules": {"name_pattern": "srv-*"}})
    log_in(page, fleet)
    # Given the collection's page
    page.get_by_role("link", name="Collections", exact=True).click()
    page.get_by_role("link", name="Servers", exact=True).click()
    page.get_by_role("link", name="Maintenance windows").click()
    expect(page.locator("#window-state")).to_contain_text("No windows")

    # When the admin types a window with an unknown time zone
    windows = page.get_by_label("Windows, one a line", exact=False)
    windows.fill("Sat 22:00-Sun 04:00 Europe/Berlin\nWed 12:00-Wed 13:00 Mars/Base")
    page.get_by_role("button", name="Save windows").click()

    # Then the error names it, the text stays, and nothing is stored
    expect(page.locator("#windows-error")).to_contain_text("unknown time zone 'Mars/Base'")
    expect(windows).to_have_value(
        "Sat 22:00-Sun 04:00 Europe/Berlin\nWed 12:00-Wed 13:00 Mars/Base"
    )
    servers = fleet.api.get("/api/collections", params={"name": "Servers"})[0]["id"]
    assert fleet.api.get(f"/api/collections/{servers}/windows")["windows"] == []

    # When it is corrected, the windows are saved and the page says when they open
    windows.fill("Sat 22:00-Sun 04:00 Europe/Berlin\nWed 12:00-Wed 13:00 UTC")
    page.get_by_role("button", name="Save windows").click()
    expect(page.get_by_role("status").filter(has_text="Windows saved")).to_be_visible()
    expect(page.locator("#window-state")).to_contain_text(
        "open" if fleet.api.get(f"/api/collections/{servers}/windows")["open_now"] else "opens"
    )
    stored = fleet.api.get(f"/api/collections/{servers}/windows")["windows"]
    assert stored == ["Sat 22:00-Sun 04:00 Europe/Berlin", "Wed 12:00-Wed 13:00 UTC"]
    screenshot(page, "21-maintenance-windows")


def test_a_schedule_sets_the_expiry_of_its_runs(console_fleet: Fleet, page: Page) -> None:
    fleet = console_fleet
    # Given computers in collection Lab and a task
    seed(fleet, 2)
    fleet.api.post("/api/collections", {"name": "Lab", "rules": {"name_pattern": "lab-*"}})
    fleet.create_task("nightly", "echo nightly")
    log_in(page, fleet)

    # When the operator adds a nightly schedule whose runs' expiry is no duration
    page.goto(f"{fleet.ns_url}/console/schedules")
    page.get_by_label("Task").select_option("nightly")
    page.get_by_label("Collections", exact=True).select_option("Lab")
    page.get_by_label("Recurring, cron").check()
    page.get_by_label("Cron expression").fill("0 3 * * *")
    expiry = page.get_by_label("Each run: computers that do not pick it up within")
    expiry.fill("soon")
    page.get_by_role("button", name="Add schedule").click()

    # Then ns.expiry's message shows next to the field, the text stays, nothing is stored
    expect(page.locator("#expires_in-error")).to_contain_text("'soon' is not a duration")
    expect(expiry).to_have_value("soon")
    assert fleet.api.get("/api/schedules") == []

    # When it is 2 hours, the schedule is added and its runs expire 2 hours after they start
    expiry.fill("2h")
    page.get_by_role("button", name="Add schedule").click()
    expect(page.get_by_role("status").filter(has_text="Schedule 1 added")).to_be_visible()
    expect(page.locator("tr[data-schedule='1'] .expiry")).to_have_text("runs expire after 2 h")
    assert fleet.api.get("/api/schedules/1")["options"] == {"expires_in_s": 7200.0}
