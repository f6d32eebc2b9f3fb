"""Computers in the console: search, sort and pages on the server; one computer and *why*."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.console.conftest import log_in, no_horizontal_scroll, screenshot, seed
from tests.fleet import Fleet

SEEDED = 120


def test_find_sort_and_page_computers_then_see_why(console_fleet: Fleet, page: Page) -> None:
    fleet = console_fleet
    # Given a task server named by a policy, a real agent, and 120 more computers
    fleet.start_ts("ts-a")
    fleet.apply_policy("Lab", "pc-*", ["ts-a"])
    fleet.start_agent("pc-1")
    fleet.wait_assigned(["pc-1"])
    seed(fleet, SEEDED)
    total = fleet.api.get("/api/computers", params={"limit": 1})["total"]
    log_in(page, fleet)

    # When the admin opens Computers
    page.get_by_role("link", name="Computers", exact=True).click()

    # Then it says how many there are and shows the first page of 50
    expect(page.locator("#count")).to_have_text(f"{total} computers — page 1 of 3")
    expect(page.locator("table.computers tbody tr")).to_have_count(50)
    assert no_horizontal_scroll(page)
    screenshot(page, "07-computers")

    # When they type in the search box, the results change without a reload
    marker = page.evaluate("window.__notReloaded = true")
    assert marker
    page.get_by_label("Search name, OS or address").fill("lab-11")
    expect(page.locator("#count")).to_have_text("10 computers matching “lab-11”")
    assert page.evaluate("window.__notReloaded") is True
    expect(page).to_have_url(re.compile(r"q=lab-11"))
    names = page.locator("table.computers tbody tr td:first-child").all_inner_texts()
    assert names == [f"lab-11{n}" for n in range(10)]

    # When they sort by name, descending, then page on
    page.get_by_role("link", name="Name ▲").click()
    expect(page.locator("table.computers tbody tr").first).to_contain_text("lab-119")
    page.get_by_label("Search name, OS or address").fill("")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("table.computers tbody tr").first).to_contain_text("ts-a")
    page.get_by_role("link", name="Next").click()
    expect(page.locator("#count")).to_contain_text("page 2 of 3")

    # When they open pc-1: its task server and why, from the recorded reason
    page.goto(f"{fleet.ns_url}/console/computers?q=pc-1")
    page.get_by_role("link", name="pc-1", exact=True).click()
    expect(page.locator("#task-server")).to_contain_text("ts-a")
    expect(page.locator("#task-server")).to_contain_text("chosen by: policy")
    expect(page.locator("#why")).to_contain_text("first available on the policy list for 'Lab'")
    expect(page.locator("#collections")).to_contain_text("Lab")
    screenshot(page, "08-computer")


def test_unknown_computer_and_bad_sort_are_pages_not_tracebacks(
    console_fleet: Fleet, page: Page
) -> None:
    log_in(page, console_fleet)
    response = page.goto(f"{console_fleet.ns_url}/console/computers/no-such-pc")
    assert response is not None and response.status == 404
    expect(page.get_by_role("alert")).to_contain_text("no computer 'no-such-pc'")
    response = page.goto(f"{console_fleet.ns_url}/console/computers?sort=secret")
    assert response is not None and response.status == 400
    expect(page.get_by_role("alert")).to_contain_text("sort 'secret' must be one of")
    response = page.goto(f"{console_fleet.ns_url}/console/computers?page=0")
    assert response is not None and response.status == 400
