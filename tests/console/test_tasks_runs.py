"""Tasks and runs in the console: a form with mistakes, Run now, and a run that updates live."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.console.conftest import log_in, no_horizontal_scroll, screenshot
from tests.fleet import Fleet

AGENTS = ["pc-1", "pc-2", "pc-3"]


def test_write_a_task_run_it_on_a_collection_and_watch_it_finish(
    console_fleet: Fleet, page: Page
) -> None:
    fleet = console_fleet
    # Given three agents in collection Lab, served by ts-a
    fleet.start_ts("ts-a")
    fleet.apply_policy("Lab", "pc-*", ["ts-a"])
    for name in AGENTS:
        fleet.start_agent(name)
    fleet.wait_assigned(AGENTS)
    log_in(page, fleet)

    # When the admin writes a task with two mistakes: no script, and a timeout that is no number
    page.get_by_role("link", name="Tasks", exact=True).click()
    page.get_by_role("link", name="New run-script task").click()
    page.get_by_label("Name").fill("Who am I")
    page.get_by_label("Timeout (seconds)").fill("soon")
    page.get_by_role("button", name="Save task").click()

    # Then each mistake shows next to its field, one at a time, and nothing typed is lost
    expect(page.locator("#timeout_s-error")).to_have_text("'soon' is not a number of seconds")
    expect(page.get_by_label("Name")).to_have_value("Who am I")
    screenshot(page, "09-task-form-error")
    page.get_by_label("Timeout (seconds)").fill("60")
    page.get_by_role("button", name="Save task").click()
    expect(page.locator("#script-error")).to_contain_text("needs a non-empty 'script'")
    expect(page.get_by_label("Timeout (seconds)")).to_have_value("60")
    assert fleet.api.get("/api/tasks") and all(
        t["name"] != "Who am I" for t in fleet.api.get("/api/tasks")
    )

    # When the script is filled in, the task is saved
    page.get_by_label("Script").fill('echo "I am $(hostname) here"')
    page.get_by_role("button", name="Save task").click()
    expect(page.get_by_role("status").filter(has_text="Task saved")).to_be_visible()
    row = page.locator("tr[data-task='Who am I']")
    screenshot(page, "10-tasks")

    # When the admin runs it now on Lab
    row.get_by_label("Collections").select_option("Lab")
    row.get_by_role("button", name="Run now").click()

    # Then the run page shows every computer reach Succeeded, without reloading
    page.wait_for_url("**/console/runs/*")
    page.evaluate("window.__notReloaded = true")
    expect(page.locator("li[data-state='Succeeded'] .n")).to_have_text("3", timeout=30_000)
    expect(page.locator("#run-progress")).to_contain_text("Done")
    assert page.evaluate("window.__notReloaded") is True
    for name in AGENTS:
        expect(page.locator(f"tr[data-computer='{name}'] .state")).to_have_text("Succeeded")
    assert no_horizontal_scroll(page)
    screenshot(page, "11-run-done")

    # And one computer's output is a click away
    page.locator("tr[data-computer='pc-2']").get_by_role("link", name="I am").click()
    expect(page.locator("#output")).to_contain_text("I am")
    expect(page.locator("#output")).to_contain_text("here")
    screenshot(page, "12-run-output")


def test_edit_a_task_and_refuse_a_name_taken(console_fleet: Fleet, page: Page) -> None:
    fleet = console_fleet
    fleet.create_task("first", "echo 1")
    fleet.create_task("second", "echo 2")
    log_in(page, fleet)
    page.goto(f"{fleet.ns_url}/console/tasks")
    page.locator("tr[data-task='second']").get_by_role("link", name="Edit").click()
    page.get_by_label("Name").fill("first")
    page.get_by_label("Script").fill("echo changed")
    page.get_by_role("button", name="Save task").click()
    expect(page.locator("#name-error")).to_have_text("a task named 'first' already exists")
    expect(page.get_by_label("Script")).to_have_value("echo changed")
    assert fleet.api.get("/api/tasks/second")["params"]["script"] == "echo 2"
    page.get_by_label("Name").fill("second, edited")
    page.get_by_role("button", name="Save task").click()
    expect(page.locator("tr[data-task='second, edited']")).to_be_visible()
    assert fleet.api.get("/api/tasks/second, edited")["params"]["script"] == "echo changed"


def test_run_now_on_nothing_says_why_and_keeps_the_choice(console_fleet: Fleet, page: Page) -> None:
    fleet = console_fleet
    fleet.create_task("hello", "echo hello")
    log_in(page, fleet)
    page.goto(f"{fleet.ns_url}/console/tasks")
    row = page.locator("tr[data-task='hello']")
    row.get_by_label("Computers (comma-separated)").fill("no-such-pc")
    row.get_by_role("button", name="Run now").click()
    row = page.locator("tr[data-task='hello']")
    expect(row.get_by_role("alert")).to_contain_text("no collection or computer named 'no-such-pc'")
    expect(row.get_by_label("Computers (comma-separated)")).to_have_value("no-such-pc")
    assert fleet.api.get("/api/runs")["runs"] == []


def test_set_a_tasks_retries_and_back_off_on_its_form(console_fleet: Fleet, page: Page) -> None:
    fleet = console_fleet
    log_in(page, fleet)
    # Given the new task form, filled in
    page.goto(f"{fleet.ns_url}/console/tasks/new")
    page.get_by_label("Name").fill("flaky")
    page.get_by_label("Script").fill("exit 1")
    expect(page.get_by_label("Retries after a failure (0 to 10)")).to_have_value("0")

    # When the admin asks for more retries than the NS allows
    page.get_by_label("Retries after a failure (0 to 10)").fill("11")
    page.get_by_label("Back-off before the first retry (seconds)").fill("30")
    page.get_by_role("button", name="Save task").click()

    # Then the NS's own message (ns.task_retries) shows next to the field; nothing is saved
    expect(page.locator("#retries-error")).to_contain_text("retries: give 0 to 10")
    expect(page.get_by_label("Back-off before the first retry (seconds)")).to_have_value("30")
    assert all(t["name"] != "flaky" for t in fleet.api.get("/api/tasks"))

    # When a back-off that is no number is given, that field says so
    page.get_by_label("Retries after a failure (0 to 10)").fill("3")
    page.get_by_label("Back-off before the first retry (seconds)").fill("soon")
    page.get_by_role("button", name="Save task").click()
    expect(page.locator("#retry_backoff_s-error")).to_have_text("'soon' is not a number of seconds")

    # When both are right, the task is saved with them, as the API shows
    page.get_by_label("Back-off before the first retry (seconds)").fill("30")
    page.get_by_role("button", name="Save task").click()
    expect(page.get_by_role("status").filter(has_text="Task saved")).to_be_visible()
    task = fleet.api.get("/api/tasks/flaky")
    assert (task["retries"], task["retry_backoff_s"]) == (3, 30.0)

    # And editing shows them and changes them
    page.locator("tr[data-task='flaky']").get_by_role("link", name="Edit").click()
    expect(page.get_by_label("Retries after a failure (0 to 10)")).to_have_value("3")
    expect(page.get_by_label("Back-off before the first retry (seconds)")).to_have_value("30")
    page.get_by_label("Retries after a failure (0 to 10)").fill("0")
    page.get_by_role("button", name="Save task").click()
    expect(page.get_by_role("status").filter(has_text="Task saved")).to_be_visible()
    assert fleet.api.get("/api/tasks/flaky")["retries"] == 0
