"""The console in real headless Chromium (Debian's package) against a real NS.

Screenshots of each page go to ``test-artifacts/console/``; docs/console.md
shows them. Without /usr/bin/chromium the tests skip with the reason, except
where TASKFLEET_REQUIRE_BROWSER is set (CI), where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.fleet import Fleet

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
# Chromium as root in a container, and quiet: no background calls to the outside.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# Module scope, not session: the sync Playwright API keeps an event loop running in this
# thread while it is open, and later tests that call asyncio.run() must not find one.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} is missing: 'make test' installs Debian's chromium package"
        if os.environ.get("TASKFLEET_REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def console_fleet(tmp_path: Path) -> Iterator[Fleet]:
    """An NS on SQLite (the console reads through the same services on both backends)."""
    fleet = Fleet(tmp_path / "fleet", f"sqlite:///{tmp_path / 'ns.db'}")
    try:
        fleet.start_ns()
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    # The NS serves HTTPS with its own CA, which this Chromium does not know: the TLS
    # of that CA is tested in tests/integration/test_tls.py; here the pages are.
    context = browser.new_context(viewport={"width": 1280, "height": 800}, ignore_https_errors=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        yield page
    finally:
        context.close()


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def admin_password(fleet: Fleet) -> str:
    return (fleet.root / "ns" / "admin.password").read_text().strip()


def log_in(page: Page, fleet: Fleet, name: str = "admin", password: str | None = None) -> None:
    page.goto(f"{fleet.ns_url}/console/")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(password or admin_password(fleet))
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{fleet.ns_url}/console/")


def no_horizontal_scroll(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def seed(fleet: Fleet, count: int, prefix: str = "lab") -> None:
    """Computers enrolled through the real agent API, without running agents."""
    token = fleet.token("agent")
    with httpx.Client(base_url=fleet.ns_url, timeout=30) as client:
        for n in range(count):
            address = f"10.9.{n // 250}.{n % 250 + 1}/16"
            facts = {
                "name": f"{prefix}-{n:03}",
                "hardware_id": f"seed-{prefix}-{n}",
                "addresses": [address],
            }
            body = {"token": token, "facts": facts, "csr": fleet.csr()}
            client.post("/api/agent/enrol", json=body).raise_for_status()
