"""Logging in and out: sessions, a wrong password, the brake on guessing, security headers."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.console.conftest import admin_password, no_horizontal_scroll, screenshot
from tests.fleet import Fleet


def test_log_in_wrong_password_then_right_one_then_out(console_fleet: Fleet, page: Page) -> None:
    fleet = console_fleet
    # Given the console, not logged in: every page leads to the log-in form
    page.goto(f"{fleet.ns_url}/console/taskservers")
    expect(page).to_have_url(f"{fleet.ns_url}/console/login?next=/console/taskservers")
    screenshot(page, "01-login")

    # When a wrong password is typed
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()

    # Then the error shows next to the field, the name is kept, the password is not
    expect(page.locator("#login-error")).to_have_text("wrong user name or password")
    expect(page.get_by_label("User name")).to_have_value("admin")
    expect(page.get_by_label("Password")).to_have_value("")
    expect(page.get_by_label("Password")).to_have_attribute("aria-invalid", "true")
    screenshot(page, "02-login-wrong-password")

    # When the right password is typed, the page first asked for opens
    page.get_by_label("Password").fill(admin_password(fleet))
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{fleet.ns_url}/console/taskservers")
    expect(page.get_by_role("heading", name="Task servers")).to_be_visible()

    # And the session cookie is HttpOnly and SameSite, the page has a CSP without inline script
    cookie = next(c for c in page.context.cookies() if c["name"] == "taskfleet_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    response = page.goto(f"{fleet.ns_url}/console/")
    assert response is not None
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert page.locator("script:not([src])").count() == 0
    assert no_horizontal_scroll(page)
    screenshot(page, "03-dashboard")

    # When the user logs out, the console asks for a log-in again
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{fleet.ns_url}/console/login")
    page.goto(f"{fleet.ns_url}/console/")
    expect(page.get_by_role("heading", name="Log in to taskfleet")).to_be_visible()


def test_repeated_wrong_passwords_are_braked(console_fleet: Fleet, page: Page) -> None:
    fleet = console_fleet
    # Given five wrong passwords for admin
    page.goto(f"{fleet.ns_url}/console/login")
    for _ in range(5):
        page.get_by_label("User name").fill("admin")
        page.get_by_label("Password").fill("guess-guess")
        page.get_by_role("button", name="Log in").click()
        expect(page.locator("#login-error")).to_have_text("wrong user name or password")

    # When the right password comes next, it is refused for now, with how long to wait
    page.get_by_label("Password").fill(admin_password(fleet))
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#login-error")).to_contain_text("too many failed log-ins; try again in")

    # And the failures are in the audit log, who and when
    entries = fleet.api.get("/api/audit", params={"action": "console.login-failed"})
    rows = entries if isinstance(entries, list) else entries["entries"]
    assert len([r for r in rows if r["action"] == "console.login-failed"]) == 5


def test_log_in_keeps_to_the_console(console_fleet: Fleet, page: Page) -> None:
    # A crafted ?next= cannot send the browser to another site after logging in
    page.goto(f"{console_fleet.ns_url}/console/login?next=https://evil.example/")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(admin_password(console_fleet))
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{console_fleet.ns_url}/console/")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()


def test_parallel_guesses_are_braked_too(console_fleet: Fleet, page: Page) -> None:
    # Given a burst of ten wrong passwords sent at once from the log-in page
    page.goto(f"{console_fleet.ns_url}/console/login")
    statuses = page.evaluate(
        """async (url) => Promise.all([...Array(10).keys()].map(async () => {
               const body = new URLSearchParams({name: "admin", password: "guess-guess"});
               return (await fetch(url, {method: "POST", body})).status; }))""",
        f"{console_fleet.ns_url}/console/login",
    )
    # Then at most five were checked; the rest were refused before any password check
    assert statuses.count(401) <= 5 and statuses.count(429) >= 5, statuses
    assert set(statuses) <= {401, 429}


def test_errors_in_the_console_are_pages(console_fleet: Fleet, page: Page) -> None:
    log_in_page = f"{console_fleet.ns_url}/console/login"
    page.goto(log_in_page)
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(admin_password(console_fleet))
    page.get_by_role("button", name="Log in").click()
    # An unknown console page is an HTML page that says so, not the API's JSON
    response = page.goto(f"{console_fleet.ns_url}/console/no-such-page")
    assert response is not None and response.status == 404
    assert response.headers["content-type"].startswith("text/html")
    expect(page.get_by_role("alert")).to_have_text("there is no such page in the console")
    # A NUL character typed into a form is refused with a reason, and nothing is stored
    response = page.goto(f"{console_fleet.ns_url}/console/computers?q=a%00b")
    assert response is not None and response.status == 400
    expect(page.get_by_role("alert")).to_contain_text("NUL character")
