"""The task servers page shows the status events a task server set aside (R12)."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from taskfleet.cli.launcher import wait_until
from tests.console.conftest import log_in, screenshot
from tests.fleet import Fleet
from tests.integration.test_poisoned_status import dead_letters_at_ns, enrol


def test_task_servers_page_shows_dead_letters_and_why(console_fleet: Fleet, page: Page) -> None:
    fleet = console_fleet
    # Given a task server and an agent it serves
    ts = fleet.start_ts("ts-a")
    fleet.apply_policy("Lab", "pc-*", ["ts-a"])
    agent = enrol(fleet, "pc-1")

    # When the agent reports on an instance the NS never created (every field valid)
    with agent.client(ts.url) as client:
        wait_until(
            lambda: client.get("/agent/poll", headers=agent.header).status_code == 200,
            20,
            "pc-1 served by ts-a",
        )
        reply = agent.send(client, agent.event(instance_id=2_000_000_000))
        assert reply.status_code == 200, reply.text

    # Then the NS rejects it, the task server sets it aside and says so in its heartbeat
    wait_until(lambda: dead_letters_at_ns(fleet, "ts-a", 1), 30, "a dead letter at the NS")

    # And the task servers page shows the count and the reason
    log_in(page, fleet)
    page.get_by_role("link", name="Task servers", exact=True).click()
    cell = page.locator("tr[data-name='ts-a'] td.dead-letters")
    expect(cell).to_contain_text("1")
    expect(cell).to_contain_text("no instance 2000000000")
    expect(cell.locator("small")).to_have_attribute("title", re.compile("no instance 2000000000"))
    screenshot(page, "04b-taskservers-dead-letters")
