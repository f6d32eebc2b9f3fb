"""Run history in the console: the run list's filters (htmx, no reload), live or buffered
shown on the run, and one computer's whole output."""

from __future__ import annotations

import datetime as dt
import re

from playwright.sync_api import Page, expect

from tests.console.conftest import log_in, screenshot, seed
from tests.fleet import Fleet


def test_filter_the_run_list_and_read_a_computers_whole_output(
    console_fleet: Fleet, page: Page
) -> None:
    fleet = console_fleet
    # Given two agents in Lab, a run that succeeds on both and a buffered one that fails
    fleet.start_ts("ts-a")
    fleet.apply_policy("Lab", "pc-*", ["ts-a"])
    # (buffered status every 2 s here, not the default minute: the test need not wait)
    entry = {"collection": "Lab", "task_request_interval_min": 5, "send_status_interval_s": 2}
    fleet.api.post("/api/documents/agent-config/draft/entries", {"entry": entry})
    fleet.api.post("/api/documents/agent-config/apply")
    for name in ("pc-1", "pc-2"):
        fleet.start_agent(name)
    fleet.wait_assigned(["pc-1", "pc-2"])
    fleet.create_task("ok", "echo fine")
    fleet.create_task("bad", 'for i in $(seq 1 500); do echo "line $i"; done; exit 2')
    ok = fleet.run("ok", ["Lab"])
    bad = fleet.run("bad", ["pc-2"], live=False)
    fleet.wait_run(ok)
    fleet.wait_run(bad, timeout=120)
    log_in(page, fleet)

    # When the admin opens Runs, both are listed, newest first, with how they report
    page.get_by_role("link", name="Runs", exact=True).click()
    rows = page.locator("#run-results tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("bad")
    expect(page.locator(f"tr[data-run='{bad}']")).to_contain_text("buffered")
    expect(page.locator(f"tr[data-run='{ok}']")).to_contain_text("live")
    page.evaluate("window.__notReloaded = true")

    # When they filter by state Failed
    page.get_by_label("State").select_option("Failed")
    # Then only the failed run is left, in place, and the address says so
    expect(rows).to_have_count(1)
    expect(page.locator(f"tr[data-run='{bad}']")).to_be_visible()
    expect(page).to_have_url(re.compile(r"state=Failed"))
    screenshot(page, "30-runs-filtered")

    # When they filter by task and target instead
    page.get_by_label("State").select_option("")
    page.get_by_label("Task").select_option("ok")
    expect(rows).to_have_count(1)
    expect(page.locator(f"tr[data-run='{ok}']")).to_be_visible()
    page.get_by_label("Task").select_option("")
    page.get_by_label("Target").fill("pc-1")
    expect(rows).to_have_count(1)  # pc-1 was reached by the Lab run only
    expect(page.locator(f"tr[data-run='{ok}']")).to_be_visible()
    # and a target that names nothing says so, next to the list
    page.get_by_label("Target").fill("Nowhere")
    expect(page.locator("#run-filter-error")).to_contain_text("no collection or computer named")
    expect(rows).to_have_count(0)
    assert page.evaluate("window.__notReloaded") is True

    # When they open the failed run
    page.goto(f"{fleet.ns_url}/console/runs/{bad}")
    # Then it says it reports buffered
    expect(page.locator("#run-report")).to_contain_text("buffered")
    # and pc-2's output opens whole, every line of it
    page.locator("tr[data-computer='pc-2'] a", has_text="line 1").click()
    expect(page.locator("#output")).to_contain_text("line 500")
    expect(page.locator("#output")).to_contain_text("line 1\n")
    expect(page.get_by_text("return code 2")).to_be_visible()
    screenshot(page, "31-run-output")
    # and as plain text too
    page.get_by_role("link", name="plain text").click()
    assert page.locator("body").inner_text().splitlines()[-1] == "line 500"


def test_the_run_form_makes_live_or_buffered_an_explicit_choice(
    console_fleet: Fleet, page: Page
) -> None:
    fleet = console_fleet
    # Given an agent in Lab and a task
    fleet.start_ts("ts-a")
    fleet.apply_policy("Lab", "pc-*", ["ts-a"])
    fleet.start_agent("pc-1")
    fleet.wait_assigned(["pc-1"])
    fleet.create_task("ok", "echo fine")
    task_id = next(t["id"] for t in fleet.api.get("/api/tasks") if t["name"] == "ok")
    log_in(page, fleet)

    # When the operator opens the run form, live is chosen unless they say otherwise
    page.goto(f"{fleet.ns_url}/console/tasks/{task_id}/run")
    expect(page.get_by_label("Computers report")).to_have_value("live")
    # and they choose buffered and start it on Lab
    page.get_by_label("Computers report").select_option("buffered")
    page.get_by_label("Collections").select_option("Lab")
    page.get_by_role("button", name="Start run").click()

    # Then the run is buffered, on its page and in the API
    page.wait_for_url("**/console/runs/*")
    expect(page.locator("#run-report")).to_contain_text("buffered")
    run_id = int(page.url.rsplit("/", 1)[1])
    assert fleet.api.get(f"/api/runs/{run_id}")["report"] == "buffered"


def test_the_output_kept_per_computer_is_set_with_the_intervals(
    console_fleet: Fleet, page: Page
) -> None:
    fleet = console_fleet
    # Given collection Lab
    fleet.api.post("/api/collections", {"name": "Lab", "rules": {"name_pattern": "pc-*"}})
    log_in(page, fleet)
    page.goto(f"{fleet.ns_url}/console/agent-config")

    # When the admin keeps 64 KiB of output for Lab, with a mistake first
    page.get_by_label("Collection", exact=True).select_option("Lab")
    page.get_by_label("Task Request Interval (minutes)").fill("5")
    page.get_by_label("Send Status Interval (seconds)").fill("60")
    page.get_by_label("Output kept per computer (KiB)").fill("lots")
    page.get_by_role("button", name="Save to draft").click()
    # Then the mistake is shown by its field
    expect(page.locator("#out-error")).to_contain_text("'lots' is not a number")
    page.get_by_label("Output kept per computer (KiB)").fill("64")
    page.get_by_role("button", name="Save to draft").click()

    # Then the draft keeps 64 KiB for Lab, shown in the table
    expect(page.locator("tr[data-collection='Lab']")).to_contain_text("64 KiB")
    draft = fleet.api.get("/api/documents/agent-config")["draft"]["entries"]
    assert [e["output_limit_kib"] for e in draft if e["collection"] == "Lab"] == [64]


def test_a_run_held_by_a_maintenance_window_says_when_the_window_opens(
    console_fleet: Fleet, page: Page
) -> None:
    fleet = console_fleet
    # Given two computers in Lab, whose only window opens in about 6 hours, and a task
    seed(fleet, 2)
    lab = fleet.api.post("/api/collections", {"name": "Lab", "rules": {"name_pattern": "lab-*"}})
    start = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(hours=6)
    end = start + dt.timedelta(hours=1)
    window = f"{start:%a %H:%M}-{end:%a %H:%M} UTC"
    fleet.api.call("PUT", f"/api/collections/{lab['id']}/windows", json={"windows": [window]})
    fleet.create_task("patch", "echo patched")
    held = fleet.run("patch", ["Lab"])
    free = fleet.api.post(
        "/api/runs", {"task": "patch", "targets": ["Lab"], "ignore_windows": True}
    )["id"]
    log_in(page, fleet)

    # When the operator opens the run that respects windows
    page.goto(f"{fleet.ns_url}/console/runs/{held}")

    # Then each computer says it waits for the window, and when that opens
    for name in ("lab-000", "lab-001"):
        row = page.locator(f"tr[data-computer='{name}']")
        expect(row.locator(".state")).to_have_text("Pending")
        expect(row.locator(".held")).to_have_text(
            re.compile(r"^Waiting for window \(opens in \d+ h\)$")
        )
        opens = float(row.locator(".held time").get_attribute("data-epoch") or "nan")
        assert abs(opens - start.timestamp()) < 1
    expect(page.locator("#run-held")).to_contain_text(
        "2 computers waiting for a maintenance window"
    )
    screenshot(page, "32-run-held-by-window")
    # and the instances' state itself is unchanged in the API
    assert {i["state"] for i in fleet.api.get(f"/api/runs/{held}")["instances"]} == {"Pending"}

    # When they open the run that ignores windows, nothing says it waits for one
    page.goto(f"{fleet.ns_url}/console/runs/{free}")
    expect(page.locator("tr[data-computer='lab-000'] .state")).to_have_text("Pending")
    expect(page.locator(".held")).to_have_count(0)
    expect(page.locator("#run-held")).to_have_count(0)
