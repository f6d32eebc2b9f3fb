"""Enrolment tokens: scoped to one kind, expiring, counted under concurrency, revocable;
every refusal says why and is audited. Real processes over HTTP, on both stores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.fleet import Fleet
from tests.integration.nodes import RawAgent, client, registration


def refusals(fleet: Fleet, action: str = "computer.enrol-refused") -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = fleet.api.get("/api/audit", params={"action": action})
    return found


def cli(fleet: Fleet, *args: str) -> subprocess.CompletedProcess[str]:
    """The admin CLI as a person runs it (the NS and credential from the environment)."""
    return subprocess.run(
        [sys.executable, "-m", "taskfleet", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={
            **os.environ,
            "TASKFLEET_NS": fleet.ns_url,
            "TASKFLEET_CREDENTIAL": str(fleet.credential_file),
            "COLUMNS": "200",  # tables unwrapped
        },
    )


@pytest.mark.timeout(180)
def test_used_up_expired_revoked_and_wrong_kind_tokens_are_refused(fleet: Fleet) -> None:
    # Given four agent tokens: one with a single use (taken), one expiring in a second,
    # one an admin revokes, and a task-server token
    once = fleet.api.post("/api/tokens", {"kind": "agent", "label": "once", "uses": 1})
    assert RawAgent(fleet, "pc-first").enrol(once["token"]).status_code == 200
    brief = fleet.api.post("/api/tokens", {"kind": "agent", "label": "brief", "ttl_s": 1})
    revoked = fleet.api.post("/api/tokens", {"kind": "agent", "label": "withdrawn"})
    fleet.api.post(f"/api/tokens/{revoked['id']}/revoke")
    ts_token = fleet.api.post("/api/tokens", {"kind": "taskserver", "label": "for-ts"})
    time.sleep(1.5)

    # When agents enrol with each, and a task server registers with an agent token
    cases = {
        "used-up": (once, "is used up"),
        "expired": (brief, "expired at"),
        "revoked": (revoked, "was revoked by admin"),
        "wrong-kind": (ts_token, "is a task server token: a agent enrols only"),
    }
    for reason, (token, says) in cases.items():
        reply = RawAgent(fleet, f"pc-{reason}").enrol(token["token"])
        # Then each is refused (401) with a message naming the token and the reason
        assert reply.status_code == 401, (reason, reply.text)
        message = reply.json()["message"]
        assert says in message and f"enrolment token {token['id']}" in message, message
        assert "taskfleet token create --kind agent" in message
    with client(fleet, fleet.ns_url) as ns:
        body = registration(fleet, once["token"], "ts-x", "hw-ts-x", "https://127.0.0.1:9")
        reply = ns.post("/api/ts/register", json=body)
    assert reply.status_code == 401 and "is a agent token" in reply.json()["message"]

    # ... and nothing was enrolled, and every refusal is in the audit log with its reason
    names = {c["name"] for c in fleet.api.get("/api/computers")["computers"]}
    assert names == {"pc-first"}
    audited = {(e["actor"], e["detail"]["reason"]) for e in refusals(fleet)}
    assert audited == {(f"agent:pc-{reason}", reason) for reason in cases}
    [ts_refusal] = refusals(fleet, "taskserver.register-refused")
    assert ts_refusal["detail"]["reason"] == "wrong-kind"

    # ... and the token list shows each one's state, never a token
    listed = {t["label"]: t for t in fleet.api.get("/api/tokens")}
    assert {k: listed[k]["state"] for k in ("once", "brief", "withdrawn", "for-ts")} == {
        "once": "used up",
        "brief": "expired",
        "withdrawn": "revoked",
        "for-ts": "active",
    }
    assert "tfe-" not in json.dumps(listed) and "token_hash" not in json.dumps(listed)


@pytest.mark.timeout(180)
def test_tokens_expire_in_a_day_unless_asked_and_the_cli_lists_and_revokes(fleet: Fleet) -> None:
    # When an admin creates a token without saying when it expires
    made = fleet.api.post("/api/tokens", {"kind": "agent", "label": "default"})
    # Then it expires in 24 hours
    assert made["expires_at"] == pytest.approx(time.time() + 24 * 3600, abs=60)

    # When the admin asks for one that never expires, on the CLI, into a file
    token_file = fleet.root / "forever.token"
    made = cli(fleet, "token", "create", "--label", "forever", "--expires", "never",
               "--file", str(token_file))  # fmt: skip
    # Then it is made, kept out of the terminal, mode 0600, with a warning, and audited
    assert made.returncode == 0, made.stderr
    assert made.stdout == "" and "never expires" in made.stderr
    assert token_file.read_text().startswith("tfe-agent-")
    assert token_file.stat().st_mode & 0o777 == 0o600
    [created] = fleet.api.get("/api/audit", params={"action": "token.create", "limit": 1})
    assert created["target"] == "forever" and created["detail"]["never_expires"] is True

    # When the admin lists the tokens and revokes that one
    listed = json.loads(cli(fleet, "token", "list", "--json").stdout)
    forever = next(t for t in listed if t["label"] == "forever")
    assert forever["expires_at"] is None and forever["state"] == "active"
    revoked = cli(fleet, "token", "revoke", str(forever["id"]))
    assert revoked.returncode == 0, revoked.stderr
    # Then it is revoked, audited, and an agent enrolling with it is refused
    assert f"token {forever['id']} (forever) revoked" in revoked.stdout
    shown = cli(fleet, "token", "list").stdout
    assert "revoked by admin" in shown and "tfe-" not in shown
    reply = RawAgent(fleet, "pc-late").enrol(token_file.read_text().strip())
    assert reply.status_code == 401 and "was revoked" in reply.json()["message"]
    assert fleet.api.get("/api/audit", params={"action": "token.revoke"})[0]["target"] == "forever"
    # ... and revoking it again says so
    again = cli(fleet, "token", "revoke", str(forever["id"]))
    assert again.returncode == 1 and "already revoked" in again.stderr


@pytest.mark.timeout(240)
def test_a_single_use_token_used_by_20_parallel_enrolments_enrols_exactly_one(
    fleet: Fleet, db_url: str
) -> None:
    # Given a single-use agent token (and, on PostgreSQL, a second NS replica)
    token = fleet.api.post("/api/tokens", {"kind": "agent", "label": "one", "uses": 1})["token"]
    urls = [fleet.ns_url]
    if db_url.startswith("postgresql"):
        urls.append(fleet.start_replica("ns-2").url)
    agents = [RawAgent(fleet, f"pc-{i:02d}") for i in range(20)]

    # When 20 agents enrol with it at once (spread over the replicas)
    with ThreadPoolExecutor(20) as pool:
        replies = list(
            pool.map(lambda i: agents[i].enrol(token, ns_url=urls[i % len(urls)]), range(20))
        )

    # Then exactly one is enrolled; the 19 others are told the token is used up
    codes = sorted(r.status_code for r in replies)
    assert codes == [200] + [401] * 19, [r.text for r in replies]
    assert all("is used up" in r.json()["message"] for r in replies if r.status_code == 401)
    assert fleet.api.get("/api/computers")["total"] == 1
    [listed] = [t for t in fleet.api.get("/api/tokens") if t["label"] == "one"]
    assert listed["uses_left"] == 0 and listed["state"] == "used up"
    assert len(refusals(fleet)) == 19
