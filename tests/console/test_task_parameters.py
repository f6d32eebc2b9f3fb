"""The console's task form declares parameters; its run form fills them in and warns
when targets lack the script's interpreter (htmx), before the run starts."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from taskfleet.protocol.templates import SECRET_MASK
from tests.console.conftest import log_in, screenshot, seed
from tests.fleet import Fleet

AGENTS = ["pc-1", "pc-2"]
SECRET = "pa55-Word-77"


def test_declare_parameters_then_run_with_them(console_fleet: Fleet, page: Page) -> None:
    fleet = console_fleet
    # Given two agents in collection Lab
    fleet.start_ts("ts-a")
    fleet.apply_policy("Lab", "pc-*", ["ts-a"])
    for name in AGENTS:
        fleet.start_agent(name)
    fleet.wait_assigned(AGENTS)
    log_in(page, fleet)

    # When the admin writes a task whose default does not fit its parameter's type
    page.goto(f"{fleet.ns_url}/console/tasks/new")
    page.get_by_label("Name").fill("greet")
    page.get_by_label("Script").fill(
        'echo "hi {{param.who}} x{{param.times}} on {{computer.name}} pw={{param.pw}}"'
    )
    page.get_by_label("Success return codes (comma-separated)").fill("0, 3")
    page.get_by_label("Parameter 1", exact=True).fill("who")
    page.get_by_label("Parameter 1 ask").check()
    page.get_by_label("Parameter 2", exact=True).fill("times")
    page.get_by_label("Parameter 2 type").select_option("integer")
    page.get_by_label("Parameter 2 default").fill("often")
    page.get_by_role("button", name="Save task").click()

    # Then the mistake shows at its parameter, and nothing typed is lost
    expect(page.locator("[data-field='parameters[1].default']")).to_contain_text(
        "must be a whole number"
    )
    expect(page.get_by_label("Parameter 1", exact=True)).to_have_value("who")
    assert all(t["name"] != "greet" for t in fleet.api.get("/api/tasks"))

    # When it is corrected, and a secret parameter added, the task is saved
    page.get_by_label("Parameter 2 default").fill("2")
    page.get_by_label("Parameter 3", exact=True).fill("pw")
    page.get_by_label("Parameter 3 secret").check()
    page.get_by_label("Parameter 3 default").fill(SECRET)
    page.get_by_role("button", name="Save task").click()
    expect(page.get_by_role("status").filter(has_text="Task saved")).to_be_visible()
    task = fleet.api.get("/api/tasks/greet")
    assert [p["name"] for p in task["params"]["parameters"]] == ["who", "times", "pw"]
    assert task["params"]["parameters"][2]["default"] == SECRET_MASK
    assert task["params"]["success_codes"] == [0, 3]

    # And editing it shows the secret default masked, never in the page
    page.locator("tr[data-task='greet']").get_by_role("link", name="Edit").click()
    expect(page.get_by_label("Parameter 3 default")).to_have_value(SECRET_MASK)
    assert SECRET not in page.content()
    page.get_by_role("button", name="Save task").click()  # saved as shown: secret kept
    expect(page.get_by_role("status").filter(has_text="Task saved")).to_be_visible()

    # When the operator opens its run form and picks Lab
    page.locator("tr[data-task='greet']").get_by_role("link", name="Run with parameters…").click()
    expect(page.get_by_label("who (string, asked at run time)")).to_have_attribute("required", "")
    expect(page.get_by_label("pw (string, secret)")).to_have_attribute("type", "password")
    page.get_by_label("Collections").select_option("Lab")
    expect(page.locator("#run-warning")).to_contain_text("2 computers will run this")
    screenshot(page, "30-run-form-parameters")

    # Then starting it without the asked-for value is refused at that input
    page.get_by_role("button", name="Start run").click()
    expect(page.locator("#param-who-error")).to_contain_text("asked at run time")

    # When it is filled in, the run starts and the values reach the script, secret masked
    page.get_by_label("who (string, asked at run time)").fill("Ada")
    page.get_by_role("button", name="Start run").click()
    page.wait_for_url("**/console/runs/*")
    expect(page.locator("li[data-state='Succeeded'] .n")).to_have_text("2", timeout=30_000)
    expect(page.locator("#run-params")).to_contain_text(f"pw={SECRET_MASK}")
    expect(page.locator("#run-params")).to_contain_text("who=Ada")
    run_id = int(page.url.rstrip("/").rsplit("/", 1)[-1])
    outputs = {i["output"].strip() for i in fleet.api.get(f"/api/runs/{run_id}")["instances"]}
    assert outputs == {f"hi Ada x2 on {n} pw={SECRET_MASK}" for n in AGENTS}
    assert SECRET not in page.content()


def test_the_run_form_warns_when_targets_lack_the_interpreter(
    console_fleet: Fleet, page: Page
) -> None:
    fleet = console_fleet
    # Given Linux agents and a task for Windows PowerShell
    fleet.start_ts("ts-a")
    fleet.apply_policy("Lab", "pc-*", ["ts-a"])
    for name in AGENTS:
        fleet.start_agent(name)
    fleet.wait_assigned(AGENTS)
    fleet.create_task("winonly", "Write-Output hi", interpreter="powershell")
    log_in(page, fleet)

    # When the operator chooses Lab on its run form
    page.goto(f"{fleet.ns_url}/console/tasks/winonly/run")
    page.get_by_label("Collections").select_option("Lab")

    # Then the warning names how many and which lack it, before anything runs
    warning = page.locator("#run-warning")
    expect(warning).to_contain_text("2 target computers lack the 'powershell' interpreter")
    expect(warning).to_contain_text("pc-1, pc-2")
    assert fleet.api.get("/api/runs")["runs"] == []
    screenshot(page, "31-run-form-interpreter-warning")

    # When pc-1 is excluded, Then the warning counts only the computer the run would reach
    exclude = page.get_by_label("Exclude (computer and collection names, comma-separated)")
    exclude.fill("pc-1")
    exclude.blur()
    expect(warning).to_contain_text("1 target computer lacks the 'powershell' interpreter (pc-2)")


def test_the_run_form_sets_exclusions_windows_and_completion_requirements(
    console_fleet: Fleet, page: Page
) -> None:
    fleet = console_fleet
    # Given three computers in collection Lab (no agents: their instances wait) and a task
    seed(fleet, 3)
    fleet.api.post("/api/collections", {"name": "Lab", "rules": {"name_pattern": "lab-*"}})
    fleet.create_task("patch", "echo patched")
    log_in(page, fleet)

    # When the operator runs it on Lab minus lab-001, with a share done above 1
    page.goto(f"{fleet.ns_url}/console/tasks/patch/run")
    page.get_by_label("Collections").select_option("Lab")
    page.get_by_label("Exclude (computer and collection names, comma-separated)").fill("lab-001")
    page.get_by_label("Ignore maintenance windows").check()
    page.get_by_label("Minimum wait (seconds)").fill("5")
    page.get_by_label("Maximum wait (seconds)").fill("600")
    page.get_by_label("Minimum share done (0.9 is 90 %)").fill("1.5")
    page.get_by_role("button", name="Start run").click()

    # Then ns.completion's message shows next to that field, the rest is kept, nothing runs
    expect(page.locator("#min_share-error")).to_contain_text("min_share is a fraction above 0")
    expect(page.get_by_label("Minimum share done (0.9 is 90 %)")).to_have_attribute(
        "aria-invalid", "true"
    )
    expect(
        page.get_by_label("Exclude (computer and collection names, comma-separated)")
    ).to_have_value("lab-001")
    expect(page.get_by_label("Ignore maintenance windows")).to_be_checked()
    expect(page.get_by_label("Maximum wait (seconds)")).to_have_value("600")
    assert fleet.api.get("/api/runs")["runs"] == []

    # When an exclusion names nothing, that field says so
    page.get_by_label("Minimum share done (0.9 is 90 %)").fill("0.5")
    page.get_by_label("Exclude (computer and collection names, comma-separated)").fill("nowhere")
    page.get_by_role("button", name="Start run").click()
    expect(page.locator("#exclude-error")).to_contain_text("nowhere")
    assert fleet.api.get("/api/runs")["runs"] == []

    # When it is corrected, the run starts with all of it, as the API shows
    page.get_by_label("Exclude (computer and collection names, comma-separated)").fill("lab-001")
    page.get_by_role("button", name="Start run").click()
    page.wait_for_url("**/console/runs/*")
    expect(page.locator("#run-exclude")).to_contain_text("lab-001")
    expect(page.get_by_text("Ignores maintenance windows.")).to_be_visible()
    expect(page.locator("#run-completion")).to_contain_text("min_share 0.5")
    run = fleet.api.get(f"/api/runs/{int(page.url.rstrip('/').rsplit('/', 1)[-1])}")
    assert run["exclude"] == ["lab-001"] and run["ignore_windows"] is True
    assert run["requirements"] == {"min_wait_s": 5.0, "max_wait_s": 600.0, "min_share": 0.5}
    assert sorted(i["computer"] for i in run["instances"]) == ["lab-000", "lab-002"]
