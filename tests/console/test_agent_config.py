"""Agent configuration in the console: intervals per collection, and the R7 warning past 500."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.cli.test_cli import taskfleet
from tests.console.conftest import log_in, no_horizontal_scroll, screenshot, seed
from tests.fleet import Fleet


def test_r7_warning_for_a_collection_over_500_and_its_fix(console_fleet: Fleet, page: Page) -> None:
    fleet = console_fleet
    # Given 501 computers registered through the agent API, in collection Lab
    seed(fleet, 501)
    fleet.api.post("/api/collections", {"name": "Lab", "rules": {"name_pattern": "lab-*"}})
    log_in(page, fleet)

    # Then the dashboard and the agent configuration warn: 501 computers on the defaults
    expect(page.locator(".r7")).to_contain_text("501 computers on the default intervals")
    page.get_by_role("navigation").get_by_role("link", name="Agent configuration").click()
    defaults = page.locator(".r7[data-scope='collection All Computers (defaults)']")
    expect(defaults).to_contain_text("501 computers on the default intervals")

    # When the admin types a wrong interval for Lab
    page.get_by_label("Collection", exact=True).select_option("Lab")
    page.get_by_label("Task Request Interval (minutes)").fill("often")
    page.get_by_role("button", name="Save to draft").click()

    # Then the error is by the field and the form keeps what was typed
    expect(page.locator("#tri-error")).to_have_text(
        "Task Request Interval: 'often' is not a number"
    )
    expect(page.get_by_label("Task Request Interval (minutes)")).to_have_value("often")
    expect(page.get_by_label("Collection", exact=True)).to_have_value("Lab")

    # When Lab gets the default intervals explicitly, the warning names Lab, with advice
    page.get_by_label("Task Request Interval (minutes)").fill("5")
    page.get_by_label("Send Status Interval (seconds)").fill("60")
    page.get_by_role("button", name="Save to draft").click()
    lab = page.locator(".r7[data-scope='collection Lab']")
    expect(lab).to_contain_text("501 computers on the default intervals")
    expect(lab).to_contain_text("set the Task Request Interval to 10 min")
    assert no_horizontal_scroll(page)
    screenshot(page, "15-agent-config-r7")

    # And the CLI and the API say the same
    shown = taskfleet(fleet, "agent-config", "show")
    assert "Scale warning (R7), collection Lab: 501 computers" in shown.stdout.replace("\n", " ")
    draft_advice = fleet.api.get("/api/advice", params={"draft": "true"})
    assert not next(a for a in draft_advice if a["collection"] == "Lab")["ok"]

    # When the admin takes the recommended values and applies
    lab.get_by_role("button", name="Use 10 min and 120 s for Lab").click()
    expect(page.locator(".r7[data-scope='collection Lab']")).to_have_count(0)
    row = page.locator("tr[data-collection='Lab']")
    expect(row).to_contain_text("10.0 min")
    expect(row).to_contain_text("120.0 s")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_role("status").filter(has_text="Applied as version 1")).to_be_visible()

    # Then the applied configuration carries them, and no warning is left
    applied = fleet.api.get("/api/documents/agent-config")["applied"]["document"]["entries"]
    assert applied == [
        {
            "collection": "Lab",
            "task_request_interval_min": 10.0,
            "send_status_interval_s": 120.0,
            # (not on the form: their defaults)
            "output_limit_kib": 1024,
            "inventory_interval_h": 24.0,
        }
    ]
    assert all(a["ok"] for a in fleet.api.get("/api/advice"))
    expect(page.get_by_text("The intervals fit the fleet")).to_be_visible()
