"""The Task Servers policy page (R3, R9): build, reorder, the leave guard, Apply, versions."""

from __future__ import annotations

from playwright.sync_api import Dialog, Page, expect

from tests.console.conftest import log_in, no_horizontal_scroll, screenshot
from tests.fleet import Fleet


def order(page: Page) -> list[str]:
    return page.locator("li[data-collection='Lab'] ol.servers li .ts-name").all_inner_texts()


def applied(fleet: Fleet) -> list[list[str]]:
    doc = fleet.api.get("/api/documents/policy")
    return (
        [e["task_servers"] for e in doc["applied"]["document"]["entries"]] if doc["applied"] else []
    )


def test_build_reorder_guard_apply_and_reapply(console_fleet: Fleet, page: Page) -> None:
    fleet = console_fleet
    # Given three approved task servers and a collection Lab with no list yet
    for name in ("ts-a", "ts-b", "ts-c"):
        fleet.start_ts(name)
    fleet.api.post("/api/collections", {"name": "Lab", "rules": {"name_pattern": "pc-*"}})
    log_in(page, fleet)
    page.get_by_role("link", name="Task Servers policy").click()

    # When the admin lists ts-a, ts-b and ts-c for Lab
    for name in ("ts-a", "ts-b", "ts-c"):
        page.get_by_label("Collection", exact=True).select_option("Lab")
        page.get_by_label("Task server", exact=True).select_option(name)
        page.get_by_role("button", name="Add to the end of the list").click()
    assert order(page) == ["ts-a", "ts-b", "ts-c"]

    # Then it is a draft: the banner shows on every page, and nothing is applied
    expect(page.locator("#unapplied-banner")).to_contain_text("Task Servers policy")
    assert applied(fleet) == []

    # When ts-c is moved up by keyboard, and ts-b dragged to the top
    page.get_by_role("button", name="Move ts-c up in Lab").focus()
    page.keyboard.press("Enter")
    expect(page.locator("li[data-ts='ts-c'] + li")).to_have_attribute("data-ts", "ts-b")
    assert order(page) == ["ts-a", "ts-c", "ts-b"]
    page.locator("li[data-ts='ts-b'] .grip").drag_to(page.locator("li[data-ts='ts-a'] .ts-name"))
    page.wait_for_load_state()
    expect(page.locator("ol.servers li").first).to_have_attribute("data-ts", "ts-b")
    assert order(page) == ["ts-b", "ts-a", "ts-c"]
    assert no_horizontal_scroll(page)
    screenshot(page, "13-policy-draft")

    # When they try to leave without applying, they are asked first, and can stay
    questions: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        questions.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.get_by_role("link", name="Dashboard").click()
    assert questions and "unapplied changes" in questions[0]
    expect(page).to_have_url(f"{fleet.ns_url}/console/policy")

    # And a task server already on the list cannot be added twice: the error is by the form
    page.get_by_label("Collection", exact=True).select_option("Lab")
    page.get_by_label("Task server", exact=True).select_option("ts-a")
    page.get_by_role("button", name="Add to the end of the list").click()
    expect(page.locator("#add-error")).to_have_text("ts-a is on the list for 'Lab' already")

    # When they click Apply and confirm
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Apply").click()

    # Then it is version 1, in effect, and the banner is gone
    expect(page.get_by_role("status").filter(has_text="Applied as version 1")).to_be_visible()
    expect(page.locator("#unapplied-banner")).to_have_count(0)
    assert applied(fleet) == [["ts-b", "ts-a", "ts-c"]]

    # When ts-c is removed and that applied too, versions can be compared and 1 applied again
    page.get_by_role("button", name="Remove ts-c from Lab").click()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_role("status").filter(has_text="Applied as version 2")).to_be_visible()
    page.get_by_role("link", name="Applied versions").click()
    page.get_by_label("Compare version").select_option("1")
    page.get_by_label("with version").select_option("2")
    page.get_by_role("button", name="Compare").click()
    changed = page.locator("table.compare tr.changed")
    expect(changed).to_contain_text("ts-b → ts-a → ts-c")
    expect(changed).to_contain_text("ts-b → ts-a")
    screenshot(page, "14-policy-versions")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("tr[data-version='1']").get_by_role("button", name="Apply again").click()
    expect(page.get_by_role("status").filter(has_text="applied again as version 3")).to_be_visible()
    assert applied(fleet) == [["ts-b", "ts-a", "ts-c"]]
    audit = fleet.api.get("/api/audit", params={"action": "policy.apply"})
    assert [e["detail"]["version"] for e in audit] == [3, 2, 1]


def test_viewer_sees_the_policy_without_controls(console_fleet: Fleet, page: Page) -> None:
    fleet = console_fleet
    fleet.start_ts("ts-a")
    fleet.apply_policy("Lab", "pc-*", ["ts-a"])
    fleet.api.post(
        "/api/users", {"name": "vera", "role": "viewer", "password": "viewer-password-1"}
    )
    log_in(page, fleet, "vera", "viewer-password-1")
    page.goto(f"{fleet.ns_url}/console/policy")
    assert order(page) == ["ts-a"]
    expect(page.get_by_role("button")).to_have_count(1)  # Log out, nothing else
    expect(page.locator("[draggable='true']")).to_have_count(0)
