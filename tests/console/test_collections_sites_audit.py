"""Collections, sites and the audit log in the console."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.console.conftest import log_in, no_horizontal_scroll, screenshot, seed
from tests.fleet import Fleet


def test_collections_with_rule_and_static_members(console_fleet: Fleet, page: Page) -> None:
    fleet = console_fleet
    # Given computers web-000..web-002 and db-000
    seed(fleet, 3, prefix="web")
    seed(fleet, 1, prefix="db")
    log_in(page, fleet)
    page.get_by_role("link", name="Collections").click()

    # When a collection is made with a bad subnet, the error is by that field
    page.get_by_label("Name", exact=True).fill("Web")
    page.get_by_label("Computers whose name matches").fill("web-*")
    page.get_by_label("Computers in these subnets").fill("10.1.0.0/33")
    page.get_by_role("button", name="Create collection").click()
    expect(page.locator("#cidr-error")).to_contain_text("'10.1.0.0/33' is not a subnet")
    expect(page.get_by_label("Computers whose name matches")).to_have_value("web-*")

    # When the subnet is cleared, the collection is made, with the rule's members
    page.get_by_label("Computers in these subnets").fill("")
    page.get_by_role("button", name="Create collection").click()
    expect(page.get_by_role("heading", name="Web")).to_be_visible()
    expect(page.locator("#member-count")).to_have_text("3 members.")

    # When db-000 is added as a static member (after a typo), then removed
    page.get_by_label("Add computers").fill("db-999")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.locator("#member-error")).to_contain_text("no computer 'db-999'")
    expect(page.get_by_label("Add computers")).to_have_value("db-999")
    page.get_by_label("Add computers").fill("db-000")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.locator("tr[data-computer='db-000']")).to_contain_text("static member")
    assert no_horizontal_scroll(page)
    screenshot(page, "16-collection")
    (web,) = fleet.api.get("/api/collections", params={"name": "Web"})
    members = fleet.api.get(f"/api/collections/{web['id']}")["members"]
    assert sorted(m["name"] for m in members) == ["db-000", "web-000", "web-001", "web-002"]
    page.get_by_role("button", name="Remove db-000").click()
    expect(page.locator("#member-count")).to_have_text("3 members.")


def test_sites_subnets_and_the_audit_log(console_fleet: Fleet, page: Page) -> None:
    fleet = console_fleet
    seed(fleet, 2, prefix="hq")  # addresses 10.9.0.1/16 and 10.9.0.2/16
    log_in(page, fleet)
    page.get_by_role("link", name="Sites").click()

    # When a site is made for 10.9.0.0/16, it holds those computers
    page.get_by_label("Name", exact=True).fill("HQ")
    page.get_by_label("Subnets (comma-separated)").fill("10.9.0.0/16")
    page.get_by_role("button", name="Create site").click()
    site = page.locator("section[data-site='HQ']")
    expect(site.locator(".computers")).to_contain_text("hq-000")
    expect(site.locator(".computers")).to_contain_text("hq-001")

    # When a bad subnet is added, the error is by that site's field, with what was typed
    site.get_by_label("Add subnet").fill("not-a-subnet")
    site.get_by_role("button", name="Add").click()
    site = page.locator("section[data-site='HQ']")
    expect(site.get_by_role("alert")).to_contain_text("'not-a-subnet' is not a subnet")
    expect(site.get_by_label("Add subnet")).to_have_value("not-a-subnet")
    site.get_by_label("Add subnet").fill("192.168.1.0/24")
    site.get_by_role("button", name="Add").click()
    expect(page.locator("section[data-site='HQ'] .subnets")).to_contain_text("192.168.1.0/24")
    screenshot(page, "17-sites")

    # When a subnet is removed (confirmed), it is gone
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Remove subnet 192.168.1.0/24 from HQ").click()
    expect(page.locator("section[data-site='HQ'] .subnets")).not_to_contain_text("192.168.1.0")

    # Then the audit log holds each change, who and when, and filters by action
    page.get_by_role("link", name="Audit log").click()
    page.get_by_label("Action").select_option("site.add-subnet")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#audit-count")).to_have_text("1 entry")
    expect(page.locator("table.audit tbody")).to_contain_text("admin")
    expect(page.locator("table.audit tbody")).to_contain_text("192.168.1.0/24")
    page.goto(f"{fleet.ns_url}/console/audit?action=site.")
    expect(page.locator("table.audit tbody tr")).to_have_count(3)  # create, add, remove
    screenshot(page, "18-audit")


def test_names_with_url_characters_work(console_fleet: Fleet, page: Page) -> None:
    fleet = console_fleet
    seed(fleet, 1, prefix="pc")
    log_in(page, fleet)
    # Given a collection and a site whose names hold '/', '?', '#' and '%'
    page.goto(f"{fleet.ns_url}/console/collections")
    page.get_by_label("Name", exact=True).fill("Lab/East?x#1%")
    page.get_by_role("button", name="Create collection").click()
    # Then its page opens, and members can be added and removed
    expect(page.get_by_role("heading", name="Lab/East?x#1%")).to_be_visible()
    page.get_by_label("Add computers").fill("pc-000")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.locator("tr[data-computer='pc-000']")).to_contain_text("static member")
    page.get_by_role("button", name="Remove pc-000").click()
    expect(page.locator("#member-count")).to_have_text("0 members.")
    page.goto(f"{fleet.ns_url}/console/collections")
    page.get_by_role("link", name="Lab/East?x#1%").click()
    expect(page.get_by_role("heading", name="Lab/East?x#1%")).to_be_visible()
    # And a site so named takes subnets
    page.goto(f"{fleet.ns_url}/console/sites")
    page.get_by_label("Name", exact=True).fill("HQ/2#a")
    page.get_by_role("button", name="Create site").click()
    site = page.locator("section[data-site='HQ/2#a']")
    site.get_by_label("Add subnet").fill("10.7.0.0/16")
    site.get_by_role("button", name="Add").click()
    expect(page.locator("section[data-site='HQ/2#a'] .subnets")).to_contain_text("10.7.0.0/16")
