"""Jobs in the console: steps with their conditions, a mistake shown at its step, Run now."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.console.conftest import log_in, no_horizontal_scroll, screenshot
from tests.fleet import Fleet


def test_build_a_job_step_by_step_fix_a_mistake_and_run_it(
    console_fleet: Fleet, page: Page
) -> None:
    fleet = console_fleet
    # Given an agent in collection Lab, and two tasks
    fleet.start_ts("ts-a")
    fleet.apply_policy("Lab", "pc-*", ["ts-a"])
    fleet.start_agent("pc-1")
    fleet.wait_assigned(["pc-1"])
    fleet.create_task("install", "echo installed; exit 3")
    fleet.create_task("check", "echo checked")
    log_in(page, fleet)

    # When the admin makes a job whose first step jumps past the end on return code 3
    page.get_by_role("link", name="Jobs", exact=True).click()
    page.get_by_role("link", name="New job").click()
    page.get_by_label("Name").fill("Patch")
    page.get_by_label("Step 1 runs").select_option("task:install")
    page.get_by_label("Step 1 on return code").fill("3:goto:5")
    page.get_by_label("Step 2 runs").select_option("task:check")
    page.get_by_role("button", name="Save job").click()

    # Then the mistake shows at that step's field, and what was typed is still there
    expect(page.locator("#steps-0-on_code-error")).to_contain_text("names step 5")
    expect(page.get_by_label("Step 2 runs")).to_have_value("task:check")
    assert fleet.api.get("/api/jobs") == []
    screenshot(page, "30-job-form-error")

    # When it is corrected to go on to step 2, the job is saved and listed with its steps
    page.get_by_label("Step 1 on return code").fill("3:goto:2")
    page.get_by_role("button", name="Save job").click()
    expect(page.get_by_role("status").filter(has_text="Job saved")).to_be_visible()
    job = page.locator("section[data-job='Patch']")
    expect(job.locator("tbody tr")).to_have_count(2)
    expect(job).to_contain_text("3 → goto:2")
    assert no_horizontal_scroll(page)
    screenshot(page, "31-jobs")

    # When an operator runs it now on Lab
    job.get_by_label("Collections").select_option("Lab")
    job.get_by_role("button", name="Run now").click()

    # Then the run page shows the computer succeed down the return-code branch
    page.wait_for_url("**/console/runs/*")
    expect(page.locator("li[data-state='Succeeded'] .n")).to_have_text("1", timeout=30_000)
    run_id = int(page.url.rstrip("/").split("/")[-1])
    (instance,) = fleet.api.get(f"/api/runs/{run_id}")["instances"]
    assert "step 1: install — Failed, return code 3" in instance["output"]
    assert "checked" in instance["output"]
    # And the run page lists the computer's steps: each one's state and return code
    steps = page.locator("#run-steps table[data-computer='pc-1']")
    expect(steps.locator("tbody tr")).to_have_count(2, timeout=15_000)
    expect(steps.locator("tr[data-step='1']")).to_contain_text("install")
    expect(steps.locator("tr[data-step='1']")).to_contain_text("Failed")
    expect(steps.locator("tr[data-step='1'] td").nth(3)).to_have_text("3")
    expect(steps.locator("tr[data-step='2']")).to_contain_text("Succeeded")
    assert no_horizontal_scroll(page)
    screenshot(page, "32-job-run-steps")

    # When a server job of the same tasks runs
    fleet.api.post("/api/jobs", {"name": "Wave", "kind": "server",
                                 "steps": [{"task": "check"}, {"task": "check"}]})  # fmt: skip
    wave = fleet.wait_run(fleet.run("Wave", ["pc-1"]))
    # Then its run page lists its step runs with their state counts, each a link
    page.goto(f"{fleet.ns_url}/console/runs/{wave['id']}")
    rows = page.locator("#run-steps table.server-steps tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("Succeeded 1")
    screenshot(page, "33-server-job-steps")
    rows.nth(1).get_by_role("link").click()
    expect(page.locator("h1")).to_contain_text("check")


def test_run_a_job_from_its_run_form_now_then_on_a_schedule(
    console_fleet: Fleet, page: Page
) -> None:
    fleet = console_fleet
    # Given an agent in collection Lab, and a job whose first task takes a parameter
    fleet.start_ts("ts-a")
    fleet.apply_policy("Lab", "pc-*", ["ts-a"])
    fleet.start_agent("pc-1")
    fleet.wait_assigned(["pc-1"])
    fleet.api.post(
        "/api/tasks",
        {
            "name": "greet",
            "script": "echo hi {{param.who}}",
            "parameters": [{"name": "who", "required": True}],
        },
    )
    fleet.create_task("check", "echo checked")
    fleet.api.post("/api/jobs", {"name": "Patch", "kind": "client",
                                 "steps": [{"task": "greet"}, {"task": "check"}]})  # fmt: skip
    log_in(page, fleet)

    # When the operator opens the job's run form from the jobs page
    page.get_by_role("link", name="Jobs", exact=True).click()
    page.locator("section[data-job='Patch']").get_by_role("link", name="Run with options").click()
    expect(page.locator("h1")).to_have_text("Run Patch")
    # And starts it on Lab without the job's required parameter
    page.get_by_label("Collections").select_option("Lab")
    expect(page.locator("#run-warning")).to_contain_text("1 computer will run this")
    page.get_by_label("Minimum computers done").fill("1")
    page.locator("#expires_in").fill("2h")
    page.get_by_role("button", name="Start run").click()

    # Then that is refused at the parameter's input, with the other choices kept
    expect(page.locator("#param-who-error")).to_contain_text("required")
    expect(page.get_by_label("Minimum computers done")).to_have_value("1")
    assert fleet.api.get("/api/runs")["runs"] == []
    screenshot(page, "34-job-run-form")

    # When the parameter is filled in, the job runs now with the form's choices
    page.get_by_label("who (string, required)").fill("Ada")
    page.get_by_role("button", name="Start run").click()
    page.wait_for_url("**/console/runs/*")
    expect(page.locator("li[data-state='Succeeded'] .n")).to_have_text("1", timeout=30_000)
    run = fleet.api.get(f"/api/runs/{int(page.url.rstrip('/').split('/')[-1])}")
    assert run["task"] == "Patch" and run["params"] == {"who": "Ada"}
    assert run["report"] == "live" and run["requirements"] == {"min_count": 1}
    assert abs(run["expires_at"] - run["created_at"] - 7200) < 5
    (instance,) = run["instances"]
    assert "hi Ada" in instance["output"] and "checked" in instance["output"]

    # When the same form makes it recurring, Then the job has a schedule with those choices
    page.goto(f"{fleet.ns_url}/console/jobs")
    page.locator("section[data-job='Patch']").get_by_role("link", name="Run with options").click()
    page.get_by_label("Collections").select_option("Lab")
    page.get_by_label("who (string, required)").fill("Bob")
    page.get_by_label("Recurring, on a cron expression").check()
    page.locator("#cron").fill("0 3 * * *")
    page.get_by_label("Time zone").fill("UTC")
    page.get_by_role("button", name="Start run").click()
    expect(page.locator("#schedule-saved")).to_contain_text("Schedule 1 added; it runs next at")
    expect(page.locator("tr[data-schedule='1']")).to_contain_text("Patch")
    stored = fleet.api.get("/api/schedules/1")
    assert stored["task"] == "Patch" and stored["cron"] == "0 3 * * *"
    assert stored["params"] == {"who": "Bob"} and stored["targets"] == ["Lab"]
