"""The inventory interval per collection, on the agent configuration page."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.console.conftest import log_in
from tests.fleet import Fleet


def test_an_inventory_interval_is_set_and_kept(console_fleet: Fleet, page: Page) -> None:
    fleet = console_fleet
    fleet.api.post("/api/collections", {"name": "Lab", "rules": {"name_pattern": "lab-*"}})
    log_in(page, fleet)
    page.get_by_role("navigation").get_by_role("link", name="Agent configuration").click()

    # When a wrong inventory interval is sent, the error is by its field
    page.get_by_label("Collection", exact=True).select_option("Lab")
    page.get_by_label("Inventory interval (hours)").fill("0")
    page.get_by_role("button", name="Save to draft").click()
    expect(page.locator("#inv-error")).to_contain_text("inventory_interval_h must be between")
    expect(page.get_by_label("Inventory interval (hours)")).to_have_value("0")

    # When Lab's inventory is set to every 6 hours
    page.get_by_label("Inventory interval (hours)").fill("6")
    page.get_by_role("button", name="Save to draft").click()
    expect(page.locator("tr[data-collection='Lab']")).to_contain_text("every 6.0 h")

    # And its intervals are saved again with the inventory left empty, it is kept
    page.get_by_label("Collection", exact=True).select_option("Lab")
    page.get_by_label("Task Request Interval (minutes)").fill("10")
    page.get_by_role("button", name="Save to draft").click()
    expect(page.locator("tr[data-collection='Lab']")).to_contain_text("every 6.0 h")
    draft = fleet.api.get("/api/documents/agent-config")["draft"]
    assert draft["entries"][0]["inventory_interval_h"] == 6
