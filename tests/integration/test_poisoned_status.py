"""R12: one agent's unstorable status never stops another agent's, on SQLite and PostgreSQL.

Each kind of value a database cannot store or compare (NUL, a lone surrogate, a
non-finite time, an integer wider than its column, an over-long id) is refused where
it enters (400 naming the field), or, already in a task server's spool, set aside in
its dead letters; the status of every other agent behind it still arrives.
"""

from __future__ import annotations

import json
import ssl
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from taskfleet.cli.launcher import wait_until
from taskfleet.protocol import pki
from taskfleet.protocol.private_file import write_private
from tests.cli.test_cli import taskfleet
from tests.fleet import Fleet, TaskServerProc
from tests.scrape import scrape

# Delivery, status and run lifecycle take different SQL on each store: both run it.
pytestmark = pytest.mark.both_stores

NUL_SYMBOL = "\u2400"


@dataclass
class RawAgent:
    """An agent's identity, driven by the test over HTTP as a (misbehaving) agent would:
    its credential, and over TLS its client certificate (mutual TLS, as a real agent)."""

    name: str
    computer_id: int
    header: dict[str, str]
    verify: ssl.SSLContext | bool = True
    instance_id: int = 0

    def client(self, url: str) -> httpx.Client:
        return httpx.Client(base_url=url, timeout=30, verify=self.verify)

    def event(self, **fields: Any) -> dict[str, Any]:
        values: dict[str, Any] = {
            "id": uuid.uuid4().hex,
            "instance_id": self.instance_id,
            "computer_id": self.computer_id,
            "state": "Succeeded",
            "at": time.time(),
            "return_code": 0,
            "output": f"done on {self.name}",
            "live": True,
        }
        values.update(fields)
        return values

    def send(self, client: httpx.Client, *events: dict[str, Any]) -> httpx.Response:
        # json.dumps as Python writes it: NaN and Infinity as bare tokens, a lone
        # surrogate as its \\udxxx escape, NUL as \\u0000 (all valid to Python's parser)
        body = json.dumps({"events": list(events)}).encode()
        headers = {**self.header, "Content-Type": "application/json"}
        return client.post("/agent/status", content=body, headers=headers)


def enrol(fleet: Fleet, name: str) -> RawAgent:
    """Enrol (with a certificate request over TLS) and be assigned a task server."""
    token = fleet.token("agent")
    facts = {"name": name, "hardware_id": f"hw-{name}"}
    key = pki.new_key()
    body: dict[str, Any] = {"token": token, "facts": facts}
    if fleet.tls:
        body["csr"] = pki.csr_pem(key, "agent")
    with httpx.Client(base_url=fleet.ns_url, timeout=30) as ns:
        enrolled = ns.post("/api/agent/enrol", json=body)
    assert enrolled.status_code == 200, enrolled.text
    reply = enrolled.json()
    agent = RawAgent(name, reply["computer_id"], {"Authorization": f"Bearer {reply['credential']}"})
    if fleet.tls:
        files = fleet.root / "raw-agents" / name
        files.mkdir(parents=True)
        write_private(files / pki.KEY_FILE, pki.key_pem(key))
        (files / pki.CERT_FILE).write_text(reply["certificate"])
        agent.verify = pki.client_context(
            fleet.ca_bundle, files / pki.CERT_FILE, files / pki.KEY_FILE
        )
    with agent.client(fleet.ns_url) as ns:
        assigned = ns.post("/api/agent/assignment", json={"facts": facts}, headers=agent.header)
    assert assigned.status_code == 200, assigned.text
    return agent


@dataclass
class Given:
    ts: TaskServerProc
    bad: RawAgent
    good: RawAgent
    run_id: int


def given_two_agents_with_work_on_one_task_server(fleet: Fleet) -> Given:
    ts = fleet.start_ts("ts-a")
    fleet.apply_policy("Lab", "pc-*", ["ts-a"])
    bad, good = enrol(fleet, "pc-bad"), enrol(fleet, "pc-good")
    fleet.create_task("hello", "echo hello")
    run_id = fleet.run("hello", ["pc-bad", "pc-good"])
    for agent in (bad, good):
        with agent.client(ts.url) as client:

            def work(agent: RawAgent = agent, client: httpx.Client = client) -> list[Any] | None:
                reply = client.get("/agent/poll", headers=agent.header)
                return reply.json()["work"] or None if reply.status_code == 200 else None

            found = wait_until(work, 30, f"work for {agent.name} on ts-a")
            assert isinstance(found, list)
            agent.instance_id = found[0]["instance_id"]
    return Given(ts, bad, good, run_id)


def outputs(fleet: Fleet, run_id: int) -> dict[str, tuple[str, str | None]]:
    run = fleet.wait_run(run_id, timeout=60)
    return {i["computer"]: (i["state"], i["output"]) for i in run["instances"]}


# (what is wrong, the field, the value): each a status event no store can take as is
UNSTORABLE = [
    ("NUL in the state", "state", "Run\x00ning"),
    ("NUL in the event id", "id", "ev\x00il"),
    ("lone surrogate in the state", "state", "Running\ud800"),
    ("lone surrogate in the event id", "id", "ev\udfffil"),
    ("NaN time", "at", float("nan")),
    ("infinite time", "at", float("inf")),
    ("minus infinite time", "at", float("-inf")),
    ("time beyond the year 9999", "at", 1e300),
    ("return code beyond the 32-bit column", "return_code", 2**31),
    ("return code beyond any integer column", "return_code", 10**30),
    ("instance id beyond the id column", "instance_id", 2**31),
    ("computer id beyond any integer", "computer_id", -(10**40)),
    ("over-long event id", "id", "e" * 65),
    ("event id outside its alphabet", "id", "../../etc/passwd"),
    ("text where a number goes", "at", "yesterday"),
]


def test_unstorable_values_are_refused_and_another_agents_status_still_arrives(
    fleet: Fleet, subtests: pytest.Subtests
) -> None:
    # Given two agents on one task server, each with an instance of the same run
    given = given_two_agents_with_work_on_one_task_server(fleet)
    bad, good = given.bad, given.good
    with bad.client(given.ts.url) as client, good.client(given.ts.url) as other:
        # When one agent sends status events with each kind of unstorable value
        for what, field, value in UNSTORABLE:
            with subtests.test(msg=what):
                reply = bad.send(client, bad.event(**{field: value}))
                # Then each is refused with a 400 that names the field
                assert reply.status_code == 400, f"{what}: {reply.status_code} {reply.text}"
                body = reply.json()
                assert body["error"] == "invalid_input"
                assert body["field"] == f"events.0.{field}", body
                assert f"events.0.{field}" in body["message"], body

        # And a batch where a good event travels with a bad one is refused whole
        mixed = bad.send(client, bad.event(), bad.event(at=float("nan")))
        assert mixed.status_code == 400 and mixed.json()["field"] == "events.1.at"

        # When the other agent reports its result
        assert good.send(other, good.event(output="fine")).status_code == 200
        # And the first one reports output holding NUL and half a character (escaped,
        # never refused: a script may print anything)
        odd = bad.event(output="a\x00b\ud800c")
        assert bad.send(client, odd).json()["accepted"] == [odd["id"]]

    # Then both results arrive at the NS: the odd output shown faithfully
    found = outputs(fleet, given.run_id)
    assert found["pc-good"] == ("Succeeded", "fine")
    assert found["pc-bad"] == ("Succeeded", f"a{NUL_SYMBOL}b\ufffdc")
    # And nothing was set aside, and no process logged a traceback
    assert not (given.ts.data_dir / "dead-letters.jsonl").exists()
    assert "Traceback" not in fleet.logs(tail=100_000)


def poisoned_spool(given: Given) -> list[dict[str, Any]]:
    """What an older task server version may have spooled: events it took unchecked."""
    bad = given.bad
    return [
        bad.event(id="nan-time", at=float("nan")),
        bad.event(id="nul-state", state="Succ\x00eeded"),
        bad.event(id="surrogate-\ud800"),
        bad.event(id="wide-code", return_code=2**40),
        bad.event(id="no-such-instance", instance_id=2_000_000_000),  # the NS rejects it
        given.good.event(id="the-good-one", output="arrived"),
    ]


def test_poisoned_events_in_a_spool_are_set_aside_and_the_rest_flows(fleet: Fleet) -> None:
    # Given two agents on one task server, each with an instance of the same run
    given = given_two_agents_with_work_on_one_task_server(fleet)
    # And the task server stopped with poisoned events in its spool (an older version
    # took them unchecked), the good agent's result behind them
    fleet.launcher.stop(given.ts.proc)
    spool = given.ts.data_dir / "spool"
    (spool / "00000000000000000001-deadbeef.json").write_text(json.dumps(poisoned_spool(given)))

    # When the task server starts again
    ts = fleet.start_ts("ts-a", approve=False)

    # Then the good agent's result arrives, and the spool empties
    assert outputs_when(fleet, given.run_id, "pc-good") == ("Succeeded", "arrived")
    wait_until(lambda: not list(spool.glob("*.json")), 30, "the spool to empty")

    # And the five poisoned events are in the dead-letter file, each with its reason
    letters = {
        e["event"]["id"]: e["reason"]
        for e in map(json.loads, (ts.data_dir / "dead-letters.jsonl").read_text().splitlines())
    }
    assert set(letters) == {
        "nan-time",
        "nul-state",
        "surrogate-\ud800",
        "wide-code",
        "no-such-instance",
    }
    assert "at" in letters["nan-time"] and "refused by this task server" in letters["nan-time"]
    assert "NUL" in letters["nul-state"]
    assert "return_code" in letters["wide-code"]
    assert "the NS rejected it" in letters["no-such-instance"]
    assert "no instance" in letters["no-such-instance"]

    # And the heartbeat told the NS, whose API, CLI and the metrics show them
    row = wait_until(lambda: dead_letters_at_ns(fleet, "ts-a", 5), 20, "5 dead letters at the NS")
    assert isinstance(row, dict)
    assert "no instance" in row["dead_letter_reason"]
    listed = taskfleet(fleet, "taskserver", "list")
    assert listed.returncode == 0, listed.stderr
    assert "ts-a: 5 status event(s) set aside" in listed.stdout
    shown = taskfleet(fleet, "taskserver", "show", "ts-a")
    assert shown.returncode == 0, shown.stderr
    assert "dead letters" in shown.stdout and "no instance" in shown.stdout
    metrics = scrape(ts.url)
    assert metrics.value("taskfleet_ts_dead_letters_total") == 5
    assert metrics.value("taskfleet_ts_dead_letters_kept") == 5

    # And after another restart the count stands (it is the file's), nothing is resent
    fleet.launcher.stop(ts.proc)
    ts = fleet.start_ts("ts-a", approve=False)
    assert scrape(ts.url).value("taskfleet_ts_dead_letters_kept") == 5
    assert outputs_when(fleet, given.run_id, "pc-good") == ("Succeeded", "arrived")
    assert "Traceback" not in fleet.logs(tail=100_000)


def outputs_when(fleet: Fleet, run_id: int, name: str) -> tuple[str, str | None]:
    def check() -> tuple[str, str | None] | None:
        run = fleet.api.get(f"/api/runs/{run_id}")
        found = {i["computer"]: (i["state"], i["output"]) for i in run["instances"]}
        return found[name] if found[name][0] == "Succeeded" else None

    result = wait_until(check, 60, f"{name}'s result at the NS")
    assert isinstance(result, tuple)
    return result


def dead_letters_at_ns(fleet: Fleet, name: str, count: int) -> dict[str, Any] | None:
    rows = {r["name"]: r for r in fleet.api.get("/api/taskservers")}
    row: dict[str, Any] = rows[name]
    return row if row.get("dead_letters") == count else None


def test_a_script_that_prints_nul_succeeds_with_its_output_shown_faithfully(
    fleet: Fleet,
) -> None:
    # Given a real agent on a task server
    fleet.start_ts("ts-a")
    fleet.apply_policy("Lab", "pc-*", ["ts-a"])
    fleet.start_agent("pc-1")
    fleet.wait_assigned(["pc-1"])
    # And a script that prints a NUL byte and a byte that is not UTF-8
    fleet.create_task("nul", r"printf 'before\000after \377 end\n'")

    # When it runs
    run = fleet.wait_run(fleet.run("nul", ["pc-1"]))

    # Then it ends Succeeded, the NUL shown as the symbol for NUL, the bad byte as U+FFFD
    (instance,) = run["instances"]
    assert instance["state"] == "Succeeded", instance
    assert instance["output"] == f"before{NUL_SYMBOL}after \ufffd end\n"


def test_an_agent_spool_from_an_older_version_is_repaired_or_set_aside(fleet: Fleet) -> None:
    # Given a real agent on a task server, stopped, and a run waiting for it
    fleet.start_ts("ts-a")
    fleet.apply_policy("Lab", "pc-*", ["ts-a"])
    agent = fleet.start_agent("pc-1")
    computer_id = fleet.wait_assigned(["pc-1"])["pc-1"]["id"]
    fleet.launcher.stop(agent)
    fleet.create_task("hello", "echo hello")
    run_id = fleet.run("hello", ["pc-1"])
    (instance,) = fleet.api.get(f"/api/runs/{run_id}")["instances"]
    # And in its spool what an older version wrote: an event with a field no version
    # takes, and a result with a Windows exit code (unsigned 32-bit) and a NUL in its output
    event = {"instance_id": instance["instance_id"], "computer_id": computer_id, "live": True}
    older = [
        {**event, "id": "refused", "state": "Run\x00ning", "at": time.time()},
        {
            **event,
            "id": "repaired",
            "state": "Failed",
            "at": time.time(),
            "return_code": 0xC0000005,
            "output": "access violation\x00",
        },
    ]
    spool = fleet.root / "agents" / "pc-1" / "spool"
    (spool / "00000000000000000001-0ld0ne.json").write_text(json.dumps(older))

    # When the agent starts again
    fleet.start_agent("pc-1")

    # Then the result arrives, its exit code as Windows shows it, its NUL escaped
    done = fleet.wait_run(run_id)["instances"][0]
    assert (done["state"], done["return_code"]) == ("Failed", -1073741819)
    assert done["output"] == f"access violation{NUL_SYMBOL}"
    # And the refused event left the agent's spool instead of blocking it
    wait_until(lambda: not list(spool.glob("*.json")), 30, "pc-1's spool to empty")
