"""R12 at the NS's node endpoints: enrolment facts, task-server registration, heartbeats
and relayed status batches refuse an unstorable field with a 400 naming it, store
nothing, and keep serving (SQLite and PostgreSQL, real processes over TLS)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from taskfleet.protocol import pki
from tests.fleet import Fleet

# Bad input meets each store's own column types and limits (NUL, integer sizes): both run it.
pytestmark = pytest.mark.both_stores


def post(client: httpx.Client, path: str, body: Any) -> httpx.Response:
    # json.dumps writes NaN as a bare token and a lone surrogate as its \udxxx escape
    content = json.dumps(body).encode()
    return client.post(path, content=content, headers={"Content-Type": "application/json"})


def refused(reply: httpx.Response, field: str) -> None:
    shown = f"{reply.status_code} {reply.text[:300]}"
    assert reply.status_code == 400, shown
    assert reply.json()["error"] == "invalid_input", shown
    assert reply.json().get("field") == field or field in reply.json()["message"], shown


def test_unstorable_enrolment_and_registration_fields_are_refused_naming_them(
    fleet: Fleet, subtests: pytest.Subtests
) -> None:
    # Given an NS with an agent token and a task-server token
    agent_token, ts_token = fleet.token("agent"), fleet.token("taskserver")
    facts = {"name": "pc-1", "hardware_id": "hw-pc-1", "addresses": ["10.1.2.3/24"]}
    agent_csr = pki.csr_pem(pki.new_key(), "agent")
    ts_csr = pki.csr_pem(pki.new_key(), "taskserver")
    enrolment = {"token": agent_token, "facts": facts, "csr": agent_csr}
    registration = {
        "token": ts_token,
        "facts": {**facts, "name": "ts-x", "hardware_id": "hw-ts-x"},
        "url": "https://127.0.0.1:9",
        "csr": ts_csr,
    }
    enrol, register = "/api/agent/enrol", "/api/ts/register"
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("computer name with NUL", enrol, {"name": "pc\x00"}, "facts.name"),
        ("hardware id, lone surrogate", enrol, {"hardware_id": "\ud800"}, "facts.hardware_id"),
        ("OS of 1,000 characters", enrol, {"os": "x" * 1000}, "facts.os"),
        ("a fact's value with NUL", enrol, {"facts": {"k": "v\x00"}}, "facts.facts.k"),
        ("300 addresses", enrol, {"addresses": ["10.0.0.1/8"] * 300}, "facts.addresses"),
        ("task server name with NUL", register, {"name": "ts\x00"}, "facts.name"),
    ]
    with httpx.Client(base_url=fleet.ns_url, timeout=30) as client:
        for what, path, change, field in cases:
            with subtests.test(msg=what):
                base = enrolment if path == enrol else registration
                body = {**base, "facts": {**base["facts"], **change}}
                # When it is sent, Then it is refused naming the field
                refused(post(client, path, body), field)
        for what, change, field in [
            ("url with a lone surrogate", {"url": "https://\udfff"}, "url"),
            ("client limit beyond the column", {"client_limit": 2**31}, "client_limit"),
            ("heartbeat period NaN", {"heartbeat_period_s": float("nan")}, "heartbeat_period_s"),
            ("token with NUL", {"token": "t\x00"}, "token"),
        ]:
            with subtests.test(msg=what):
                refused(post(client, "/api/ts/register", {**registration, **change}), field)

    # Then nothing was stored: no computer, no task server
    assert fleet.api.get("/api/computers")["total"] == 0
    assert [ts["name"] for ts in fleet.api.get("/api/taskservers")] == []


def test_unstorable_heartbeat_and_relayed_status_fields_are_refused_or_isolated(
    fleet: Fleet, subtests: pytest.Subtests
) -> None:
    # Given a real task server, approved, and its own identity (credential, certificate)
    ts = fleet.start_ts("ts-a")
    identity = json.loads((ts.data_dir / "identity.json").read_text())
    verify = pki.client_context(
        fleet.ca_bundle, ts.data_dir / pki.CERT_FILE, ts.data_dir / pki.KEY_FILE
    )
    header = {"Authorization": f"Bearer {identity['credential']}"}
    with httpx.Client(base_url=fleet.ns_url, timeout=30, verify=verify, headers=header) as client:
        # When it sends heartbeats with unstorable fields, each is refused naming the field
        for what, body, field in [
            ("seen time NaN", {"seen": {"1": float("nan")}}, "seen.1"),
            ("seen id beyond any column", {"seen": {"9" * 30: 1.0}}, "seen"),
            ("open channels beyond the column", {"open_channels": 2**40}, "open_channels"),
            ("dead letters negative", {"dead_letters": -1}, "dead_letters"),
            ("dead-letter reason with NUL", {"dead_letters": 1, "dead_letter_reason": "\x00"},
             "dead_letter_reason"),
        ]:  # fmt: skip
            with subtests.test(msg=what):
                refused(post(client, "/api/ts/heartbeat", body), field)

        # When it relays a batch holding unstorable events among valid ones
        reply = post(
            client,
            "/api/ts/status",
            {
                "events": [
                    {"id": "nan-time", "instance_id": 1, "computer_id": 1, "state": "Running",
                     "at": float("nan")},
                    {"id": "\ud800", "instance_id": 1, "computer_id": 1, "state": "Running",
                     "at": 1.0},
                    {"id": "unknown", "instance_id": 123456, "computer_id": 1,
                     "state": "Running", "at": time.time()},
                ]
            },
        )  # fmt: skip
        # Then the batch is answered, each event rejected alone with its reason (an id
        # that is not valid Unicode cannot be named in a reply: it is left out)
        assert reply.status_code == 200, reply.text
        ack = reply.json()
        assert ack["accepted"] == []
        assert set(ack["rejected"]) == {"nan-time", "unknown"}
        assert "at" in ack["reasons"]["nan-time"]
        assert ack["reasons"]["unknown"]

        # And a sound heartbeat still goes through
        assert post(client, "/api/ts/heartbeat", {"dead_letters": 0}).status_code == 200
