"""Identity: no takeover of a computer or a task server, an admin's reset, each agent
bound to its own work and status, and identity secrets kept from viewers. Real
processes over HTTP, on both stores."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from taskfleet.cli.launcher import wait_until
from taskfleet.protocol import pki
from tests.fleet import Fleet
from tests.integration.nodes import RawAgent, bearer, client, registration
from tests.integration.test_enrolment_tokens import cli


def audit(fleet: Fleet, action: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = fleet.api.get("/api/audit", params={"action": action})
    return [e for e in found if e["action"] == action]


def task_server(fleet: Fleet, name: str) -> dict[str, Any]:
    found: dict[str, Any] = {r["name"]: r for r in fleet.api.get("/api/taskservers")}[name]
    return found


@pytest.mark.timeout(180)
def test_a_computer_cannot_be_taken_over_until_an_admin_resets_it(fleet: Fleet) -> None:
    token = fleet.token("agent")
    # Given pc-a, enrolled, its agent using its credential
    owner = RawAgent(fleet, "pc-a")
    assert owner.enrol(token).status_code == 200
    assert owner.ask().status_code == 200

    # When another holder of a token enrols with pc-a's hardware id
    thief = RawAgent(fleet, "pc-thief", hardware_id=owner.hardware_id)
    reply = thief.enrol(token)
    # Then it is refused (409), told what would let it in, and audited
    assert reply.status_code == 409, reply.text
    assert "computer 'pc-a' is already enrolled" in reply.json()["message"]
    assert "taskfleet computer reset pc-a" in reply.json()["message"]
    [refused] = audit(fleet, "computer.enrol-refused")
    assert (refused["actor"], refused["target"]) == ("agent:pc-thief", "pc-a")
    assert refused["detail"]["reason"] == "identity-claimed"
    # ... and pc-a's own agent goes on as before
    assert owner.ask().status_code == 200

    # When pc-a's agent enrols again presenting its credential (as after losing its token)
    old = owner.credential
    reply = owner.enrol(token, proof=old)
    # Then it keeps its identity with a new credential; the old one no longer works
    assert reply.status_code == 200 and reply.json()["computer_id"] == owner.computer_id
    assert owner.ask().status_code == 200
    stale = owner.call(
        fleet.ns_url, "POST", "/api/agent/assignment", old, json={"facts": owner.facts}
    )
    assert stale.status_code == 401, stale.text

    # When an admin resets pc-a
    reset = cli(fleet, "computer", "reset", "pc-a")
    assert reset.returncode == 0 and "next enrolment is accepted" in reset.stdout
    # Then its credential stops working, the reset is audited, and the next enrolment
    # with its hardware id is accepted, once
    assert owner.ask().status_code == 401
    assert audit(fleet, "computer.reset")[0]["actor"] == "admin"
    reinstalled = RawAgent(fleet, "pc-a", hardware_id=owner.hardware_id)
    reply = reinstalled.enrol(token)
    assert reply.status_code == 200 and reply.json()["computer_id"] == owner.computer_id
    assert reinstalled.ask().status_code == 200
    assert thief.enrol(token).status_code == 409
    [regained] = audit(fleet, "computer.re-enrol")[:1]
    assert regained["detail"]["by"] == "reset"
    # ... and nothing in the audit log names a hardware id
    assert owner.hardware_id not in json.dumps(fleet.api.get("/api/audit"))


@pytest.mark.timeout(240)
def test_a_real_agent_restarts_and_comes_back_after_a_reset(fleet: Fleet) -> None:
    fleet.create_task("hello", "echo hello from $TASKFLEET_COMPUTER")
    # Given a real agent, enrolled and assigned
    proc = fleet.start_agent("pc-real")
    first = fleet.wait_assigned(["pc-real"])["pc-real"]
    # When it restarts (its state directory kept)
    fleet.launcher.stop(proc)
    fleet.start_agent("pc-real")
    # Then it goes on as the same computer, without enrolling again, and runs work
    assert fleet.wait_run(fleet.run("hello", ["pc-real"]))["counts"] == {"Succeeded": 1}
    assert fleet.computer("pc-real")["id"] == first["id"]
    assert len(audit(fleet, "computer.enrol")) == 1
    assert audit(fleet, "computer.enrol-refused") == []

    # When an admin resets it while it runs
    assert cli(fleet, "computer", "reset", "pc-real").returncode == 0
    # Then its agent, refused with the old credential, enrols again by itself (its token
    # file), is accepted as the same computer, and runs work
    run = fleet.wait_run(fleet.run("hello", ["pc-real"]), timeout=90)
    assert run["counts"] == {"Succeeded": 1}
    assert fleet.computer("pc-real")["id"] == first["id"]
    assert [e["detail"]["by"] for e in audit(fleet, "computer.re-enrol")] == ["reset"]


@pytest.mark.timeout(240)
def test_a_task_server_cannot_be_taken_over_and_its_restart_still_works(fleet: Fleet) -> None:
    # Given an approved task server ts-a
    ts = fleet.start_ts("ts-a")
    before = task_server(fleet, "ts-a")
    hardware_id = (ts.data_dir / "hardware-id").read_text().strip()
    token = fleet.token("taskserver")

    # When registrations claim its hardware id, then its name, without its credential
    with client(fleet, fleet.ns_url) as ns:
        by_hardware = ns.post(
            "/api/ts/register",
            json=registration(fleet, token, "impostor", hardware_id, "https://127.0.0.1:9"),
        )
        by_name = ns.post(
            "/api/ts/register",
            json=registration(fleet, token, "ts-a", "hw-other", "https://127.0.0.1:9"),
        )
    # Then both are refused (409) and audited, and ts-a's record is as it was
    assert by_hardware.status_code == 409, by_hardware.text
    assert "task server 'ts-a' is already enrolled" in by_hardware.json()["message"]
    assert by_name.status_code == 409, by_name.text
    refused = audit(fleet, "taskserver.register-refused")
    assert sorted(e["actor"] for e in refused) == ["taskserver:impostor", "taskserver:ts-a"]
    assert {e["target"] for e in refused} == {"ts-a"}
    after = task_server(fleet, "ts-a")
    assert (after["url"], after["approval"], after["id"]) == (
        before["url"],
        "approved",
        before["id"],
    )
    assert [r["name"] for r in fleet.api.get("/api/taskservers")] == ["ts-a"]
    # ... and ts-a itself goes on serving (its credential still works)
    fleet.wait_available("ts-a")

    # When ts-a restarts (its data directory kept)
    fleet.launcher.stop(ts.proc)
    fleet.start_ts("ts-a", approve=False)
    # Then it is the same task server, still approved, without an admin
    fleet.wait_available("ts-a")
    assert task_server(fleet, "ts-a")["id"] == before["id"]


@pytest.mark.timeout(180)
def test_a_task_server_proving_its_identity_registers_again(fleet: Fleet) -> None:
    token = fleet.token("taskserver")
    url = "https://127.0.0.1:9"
    key = pki.new_key()  # the task server's own, kept in its data directory
    with client(fleet, fleet.ns_url) as ns:
        # Given a task server registered and approved
        first = ns.post(
            "/api/ts/register", json=registration(fleet, token, "ts-r", "hw-r", url, key)
        )
        assert first.status_code == 200, first.text
        fleet.api.post("/api/taskservers/ts-r/approve")
        proof = bearer(first.json()["credential"])
        # When it registers again presenting its credential, at the same URL
        again = ns.post(
            "/api/ts/register",
            json=registration(fleet, token, "ts-r", "hw-r", url, key),
            headers=proof,
        )
        # Then it keeps its identity and its approval
        assert again.status_code == 200, again.text
        assert again.json()["task_server_id"] == first.json()["task_server_id"]
        assert again.json()["approval"] == "approved"
        # When it registers again (proven) at another URL
        moved = ns.post(
            "/api/ts/register",
            json=registration(fleet, token, "ts-r", "hw-r", "https://127.0.0.1:10", key),
            headers=bearer(again.json()["credential"]),
        )
        # Then an admin must approve the new address first (R1)
        assert moved.status_code == 200 and moved.json()["approval"] == "pending"
        # When someone holding its credential, but not its key, registers as it
        stolen = ns.post(
            "/api/ts/register",
            json=registration(fleet, token, "ts-r", "hw-r", url),
            headers=bearer(moved.json()["credential"]),
        )
        # Then it is refused: with a certificate issued, only its key proves the claim
        assert stolen.status_code == 409, stolen.text
    assert [e["detail"]["by"] for e in audit(fleet, "taskserver.register")] == [
        "proof",
        "proof",
        "new",
    ]


@pytest.mark.timeout(240)
def test_an_agent_reads_only_its_own_work_and_writes_only_its_own_status(fleet: Fleet) -> None:
    # Given agents pc-a and pc-b on task server ts-a, and srv-c served by the NS itself
    fleet.start_ts("ts-a")
    fleet.apply_policy("Lab", "pc-*", ["ts-a"])
    token = fleet.token("agent")
    a, b, c = (RawAgent(fleet, name) for name in ("pc-a", "pc-b", "srv-c"))
    urls = {}
    for agent in (a, b, c):
        assert agent.enrol(token).status_code == 200
        urls[agent.name] = agent.ask().json()["url"]
    assert urls["pc-a"] == urls["pc-b"] != urls["srv-c"]
    ts_url = urls["pc-a"]
    # ... and work for pc-b only
    fleet.create_task("hello", "echo hello")
    run_id = fleet.run("hello", ["pc-b"])
    [instance] = fleet.api.get(f"/api/runs/{run_id}")["instances"]

    # When pc-a polls, then pc-b
    def polled(agent: RawAgent) -> list[int]:
        reply = agent.call(ts_url, "GET", "/agent/poll")
        assert reply.status_code == 200, reply.text
        return [w["instance_id"] for w in reply.json()["work"]]

    # Then pc-a is given nothing of pc-b's; pc-b gets its own
    assert wait_until(lambda: polled(b), 30, "pc-b's work") == [instance["instance_id"]]
    assert polled(a) == []

    # When pc-a reports pc-b's instance done in pc-b's name
    reply = a.status(ts_url, instance["instance_id"], computer_id=b.computer_id)
    # Then it is refused (403), audited (via the task server), and nothing is applied
    assert reply.status_code == 403, reply.text
    assert "an agent reports only its own status" in reply.json()["message"]
    forbidden = wait_until(lambda: audit(fleet, "agent.forbidden"), 20, "the refusal audited")
    assert isinstance(forbidden, list)
    assert forbidden[0]["actor"] == f"agent:{a.computer_id}"
    assert forbidden[0]["detail"]["via"] == "taskserver:ts-a"
    # When it reports pc-b's instance in its own name
    assert a.status(ts_url, instance["instance_id"]).status_code == 200
    # Then the NS does not apply it (relayed within a second or two): the instance is pc-b's
    time.sleep(4)
    assert fleet.api.get(f"/api/runs/{run_id}")["instances"][0]["state"] != "Succeeded"

    # When srv-c, served by the NS itself, reports in pc-a's name
    reply = c.status(urls["srv-c"], instance["instance_id"], computer_id=a.computer_id)
    # Then the NS refuses it (403) and audits it
    assert reply.status_code == 403, reply.text
    assert any(e["actor"] == f"agent:{c.computer_id}" for e in audit(fleet, "agent.forbidden"))
    # When pc-a asks for its task server with pc-b's hardware id
    reply = a.ask({**a.facts, "hardware_id": b.hardware_id})
    # Then it is refused and audited
    assert reply.status_code == 403, reply.text
    assert sum(e["detail"]["tried"] == "assignment" for e in audit(fleet, "agent.forbidden")) == 1


@pytest.mark.timeout(120)
def test_a_viewer_sees_no_hardware_ids(fleet: Fleet) -> None:
    # Given an enrolled computer and a viewer
    agent = RawAgent(fleet, "pc-a", hardware_id="hw-secret-1234")
    assert agent.enrol(fleet.token("agent")).status_code == 200
    viewer = fleet.api.post("/api/users", {"name": "vera", "role": "viewer"})["credential"]
    # When the viewer reads the computers, one computer and the audit log
    with client(fleet, fleet.ns_url) as http:
        shown = [
            http.get(path, headers=bearer(viewer))
            for path in ("/api/computers", "/api/computers/pc-a", "/api/audit")
        ]
    # Then no hardware id is in any of them; an admin sees it
    for reply in shown:
        assert reply.status_code == 200, reply.text
        assert "hw-secret-1234" not in reply.text and "hardware_id" not in reply.text
    assert fleet.computer("pc-a")["hardware_id"] == "hw-secret-1234"


@pytest.mark.timeout(180)
def test_tokens_come_from_a_file_or_the_environment_never_the_process_list(
    fleet: Fleet,
) -> None:
    token = fleet.token("agent")
    # When a task server (environment) and agents start with the token in a file, in the
    # environment, and (still allowed) on the command line
    ts = fleet.start_ts("ts-a")
    fleet.start_agent("pc-file")
    env_agent = fleet.launcher.start(
        "pc-env", "agent", "run", "--ns", fleet.ns_url,
        "--state-dir", str(fleet.root / "agents" / "pc-env"), "--name", "pc-env",
        "--startup-window", "0.5", *fleet.trust_args(),
        env={"TASKFLEET_TOKEN": token},
    )  # fmt: skip
    argv_agent = fleet.launcher.start(
        "pc-argv", "agent", "run", "--ns", fleet.ns_url,
        "--state-dir", str(fleet.root / "agents" / "pc-argv"), "--name", "pc-argv",
        "--startup-window", "0.5", "--token", token, *fleet.trust_args(),
    )  # fmt: skip
    # Then all enrol
    fleet.wait_assigned(["pc-file", "pc-env", "pc-argv"])
    # ... no token is in the process list of the first ones, and --token is warned about
    for proc in (ts.proc, fleet.agents["pc-file"], env_agent):
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode()
        assert "tfe-" not in cmdline, proc.name
    assert "visible to every local user" not in env_agent.output()
    assert "puts the enrolment token in the process list" in argv_agent.output()
    # ... and a script the agent runs does not inherit the token
    fleet.create_task("env", "env | grep -c TASKFLEET_TOKEN || true")
    run = fleet.wait_run(fleet.run("env", ["pc-env", "pc-file"]))
    assert [i["output"].strip() for i in run["instances"]] == ["0", "0"]


@pytest.mark.timeout(240)
def test_a_reset_task_server_registers_again_and_waits_for_approval(fleet: Fleet) -> None:
    # Given an approved task server ts-a
    ts = fleet.start_ts("ts-a")
    before = task_server(fleet, "ts-a")
    # When an admin resets its computer (as before replacing a lost data directory)
    reset = cli(fleet, "computer", "reset", "ts-a")
    assert reset.returncode == 0 and "task server ts-a is pending" in reset.stdout
    # Then its old credential is refused; it registers again by itself (its token is
    # still good), is accepted as the same task server, and waits for approval (R1)
    fleet.wait_available("ts-a", available=False)
    wait_until(
        lambda: [e["detail"]["by"] for e in audit(fleet, "taskserver.register")][:1] == ["reset"],
        30,
        "ts-a registered again",
    )
    assert task_server(fleet, "ts-a")["approval"] == "pending"
    assert task_server(fleet, "ts-a")["id"] == before["id"]
    # When the admin approves it again, it serves
    fleet.api.post("/api/taskservers/ts-a/approve")
    fleet.wait_available("ts-a", timeout=30)
    assert ts.proc.alive()


@pytest.mark.timeout(180)
def test_an_agent_claiming_an_enrolled_computer_stops_and_says_why(fleet: Fleet) -> None:
    # Given pc-x's agent, enrolled
    fleet.start_agent("pc-x")
    fleet.wait_assigned(["pc-x"])
    # When an agent with a copy of pc-x's hardware id (not its credential) starts
    state = fleet.root / "agents" / "pc-copy"
    state.mkdir(parents=True)
    (state / "hardware-id").write_text((fleet.root / "agents" / "pc-x" / "hardware-id").read_text())
    copy = fleet.start_agent("pc-copy")
    # Then it stops with the reason and what an admin can do; pc-x is untouched
    assert copy.popen.wait(60) == 2
    assert "computer 'pc-x' is already enrolled" in copy.output()
    assert "taskfleet computer reset pc-x" in copy.output()
    assert [e["actor"] for e in audit(fleet, "computer.enrol-refused")] == ["agent:pc-copy"]
    assert fleet.agents["pc-x"].alive()
