"""Schedules and maintenance windows in the console: create with a mistake, pause,
resume, remove; a collection's windows with a mistake, then saved."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from playwright.sync_api import Browser, Page, expect

from taskfleet.protocol.templates import SECRET_MASK
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


def _task_with_parameters(fleet: Fleet) -> None:
    fleet.api.post(
        "/api/tasks",
        {
            "name": "greet",
            "script": "echo hi {{param.who}} {{param.token}}",
            "parameters": [
                {"name": "who", "required": True},
                {"name": "token", "secret": True},
            ],
        },
    )


def test_a_recurring_run_from_the_run_form_is_a_schedule_with_its_choices(
    console_fleet: Fleet, page: Page
) -> None:
    fleet = console_fleet
    # Given computers in collection Lab and a task with a parameter and a secret one
    seed(fleet, 3)
    fleet.api.post("/api/collections", {"name": "Lab", "rules": {"name_pattern": "lab-*"}})
    _task_with_parameters(fleet)
    log_in(page, fleet)

    # When the operator fills in the task's run form and makes it recurring, with a cron
    # that does not parse
    page.goto(f"{fleet.ns_url}/console/tasks/greet/run")
    page.get_by_label("Collections").select_option("Lab")
    page.get_by_label("Exclude (computer and collection names, comma-separated)").fill("lab-001")
    page.get_by_label("Ignore maintenance windows").check()
    page.get_by_label("Minimum computers done").fill("2")
    page.get_by_label("Computers report").select_option("buffered")
    page.locator("#expires_in").fill("2h")
    page.get_by_label("who (string, required)").fill("Ada")
    page.get_by_label("token (string, secret)").fill("s3cret-77")
    page.get_by_label("Recurring, on a cron expression").check()
    page.locator("#cron").fill("30 25 * * 1")
    page.get_by_label("Time zone").fill("Europe/Berlin")
    page.get_by_role("button", name="Start run").click()

    # Then the mistake shows next to the cron, the choices stay, nothing is made
    expect(page.locator("#cron-error")).to_contain_text("does not parse")
    expect(page.locator("#cron")).to_have_value("30 25 * * 1")
    expect(page.get_by_label("Recurring, on a cron expression")).to_be_checked()
    expect(page.get_by_label("Time zone")).to_have_value("Europe/Berlin")
    expect(page.get_by_label("who (string, required)")).to_have_value("Ada")
    assert fleet.api.get("/api/schedules") == []
    assert fleet.api.get("/api/runs")["runs"] == []

    # When the cron is corrected (and the secret typed again)
    page.locator("#cron").fill("30 4 * * 1")
    page.get_by_label("token (string, secret)").fill("s3cret-77")
    page.get_by_role("button", name="Start run").click()

    # Then the schedules page confirms it with its next run, on Berlin's clock, a Monday
    page.wait_for_url("**/console/schedules?saved=1")
    stored = fleet.api.get("/api/schedules/1")
    berlin = dt.datetime.fromtimestamp(stored["next_fire_at"], ZoneInfo("Europe/Berlin"))
    assert (berlin.weekday(), berlin.hour, berlin.minute) == (0, 4, 30)
    expect(page.locator("#schedule-saved")).to_contain_text(
        f"Schedule 1 added; it runs next at {berlin:%Y-%m-%d %H:%M} Europe/Berlin"
    )
    # And it is listed with its cron, zone, exclusion and expiry; no run was started now
    row = page.locator("tr[data-schedule='1']")
    expect(row).to_contain_text("30 4 * * 1 Europe/Berlin")
    expect(row).to_contain_text("minus lab-001")
    expect(row.locator(".expiry")).to_have_text("runs expire after 2 h")
    assert fleet.api.get("/api/runs")["runs"] == []
    # And it keeps every choice of the run form as a schedule keeps them, the secret sealed
    assert stored["task"] == "greet" and stored["targets"] == ["Lab"]
    assert stored["exclude"] == ["lab-001"] and stored["ignore_windows"] is True
    assert stored["live"] is False and stored["requirements"] == {"min_count": 2}
    assert stored["options"] == {"expires_in_s": 7200.0}
    assert stored["params"] == {"who": "Ada", "token": SECRET_MASK}
    assert "s3cret-77" not in page.content()
    screenshot(page, "22-schedule-from-run-form")


def test_a_run_once_at_a_past_time_is_refused_next_to_the_field(
    console_fleet: Fleet, browser: Browser
) -> None:
    fleet = console_fleet
    # Given a computer, a task, and a browser in Tokyo's time zone
    seed(fleet, 1)
    fleet.create_task("patch", "echo patched")
    context = browser.new_context(ignore_https_errors=True, timezone_id="Asia/Tokyo")
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        log_in(page, fleet)
        page.goto(f"{fleet.ns_url}/console/tasks/patch/run")
        # Then the run form's time zone starts as the browser's, and Now is chosen
        expect(page.get_by_label("Time zone")).to_have_value("Asia/Tokyo")
        expect(page.get_by_label("Now", exact=True)).to_be_checked()

        # When the operator asks for one run at a time already past
        page.get_by_label("Computers (comma-separated)").fill("lab-000")
        page.get_by_label("Once, at a date and time").check()
        page.locator("#at").fill("2020-01-01T10:00")
        page.get_by_role("button", name="Start run").click()

        # Then the form says so next to that field, keeps it, and makes nothing
        expect(page.locator("#at-error")).to_contain_text("in the past")
        expect(page.locator("#at")).to_have_attribute("aria-invalid", "true")
        expect(page.locator("#at")).to_have_value("2020-01-01T10:00")
        expect(page.get_by_label("Once, at a date and time")).to_be_checked()
        assert fleet.api.get("/api/schedules") == []
        assert fleet.api.get("/api/runs")["runs"] == []

        # When the time is next year's but the time zone is unknown
        at = f"{dt.date.today().year + 1}-01-01T10:00"
        page.locator("#at").fill(at)
        page.get_by_label("Time zone").fill("Mars/Base")
        page.get_by_role("button", name="Start run").click()
        # Then that is refused next to the time zone, and nothing is made
        expect(page.locator("#timezone-error")).to_contain_text("unknown time zone 'Mars/Base'")
        assert fleet.api.get("/api/schedules") == []

        # When the zone is Tokyo's again, the schedule is made for 10:00 there
        page.get_by_label("Time zone").fill("Asia/Tokyo")
        page.get_by_role("button", name="Start run").click()
        expect(page.locator("#schedule-saved")).to_contain_text(
            f"Schedule 1 added; it runs at {at.replace('T', ' ')} Asia/Tokyo"
        )
        stored = fleet.api.get("/api/schedules/1")
        assert stored["cron"] is None and stored["timezone"] == "Asia/Tokyo"
        expected = dt.datetime.fromisoformat(at).replace(tzinfo=ZoneInfo("Asia/Tokyo"))
        assert stored["at"] == expected.timestamp()
        assert stored["targets"] == ["lab-000"] and stored["live"] is True
        expect(page.locator("tr[data-schedule='1']")).to_contain_text("once")
    finally:
        context.close()
