"""TLS and mutual TLS between real processes: the NS's CA, node certificates, revocation."""

from __future__ import annotations

import datetime
import json
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from taskfleet.cli.launcher import wait_until
from taskfleet.protocol import pki
from tests.fleet import Fleet


def _ca_context(fleet: Fleet) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(fleet.ca_bundle))


def _agent_files(fleet: Fleet, name: str) -> tuple[Path, Path, str]:
    state = fleet.root / "agents" / name
    credential = json.loads((state / "identity.json").read_text())["credential"]
    return state / pki.CERT_FILE, state / pki.KEY_FILE, credential


def _client_with(fleet: Fleet, url: str, cert: tuple[Path, Path] | None) -> httpx.Client:
    ctx = _ca_context(fleet)
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return httpx.Client(base_url=url, verify=ctx, timeout=10)


def _forged(tmp: Path, subject: str) -> tuple[Path, Path]:
    """A self-signed client certificate naming ``subject``: from no CA of ours."""
    key = pki.new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    cert = pki.issue(key, None, name, key.public_key(), days=1)
    cert_file, key_file = tmp / f"{subject.replace(':', '-')}.crt", tmp / "forged.key"
    cert_file.write_bytes(pki.pem_of(cert))
    key_file.write_bytes(pki.key_pem(key))
    return cert_file, key_file


def _expired_from_ca(fleet: Fleet, tmp: Path, subject: str) -> tuple[Path, Path]:
    """A certificate our CA signed, whose validity has ended."""
    ca_dir = fleet.root / "ns" / "ca"
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
    assert isinstance(ca_key, pki.PrivateKey)
    key = pki.new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    ten_days_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=10)
    cert = pki.issue(ca_key, ca_cert, name, key.public_key(), days=-1, valid_from=ten_days_ago)
    cert_file, key_file = tmp / "expired.crt", tmp / "expired.key"
    cert_file.write_bytes(pki.pem_of(cert))
    key_file.write_bytes(pki.key_pem(key))
    return cert_file, key_file


def test_the_ns_serves_https_with_its_own_ca_and_plain_http_gets_no_data(fleet: Fleet) -> None:
    # Given a fresh NS (the fixture starts it without options)
    ca_dir = fleet.root / "ns" / "ca"
    # Then it made a CA whose key only its user can read, and printed the fingerprint
    assert (ca_dir / "ca.key").stat().st_mode & 0o777 == 0o600
    assert fleet.fingerprint in fleet.ns.output()  # type: ignore[union-attr]
    # and it answers HTTPS with a certificate that chains to that CA, for 127.0.0.1
    with httpx.Client(verify=_ca_context(fleet)) as client:
        assert client.get(f"{fleet.ns_url}/hello").status_code == 200
    # When a client speaks plain HTTP to the TLS port
    with socket.create_connection(("127.0.0.1", fleet.ns_port), timeout=5) as sock:
        sock.sendall(b"GET /api/ca HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            reply = sock.recv(4096)
        except (ConnectionResetError, TimeoutError):
            reply = b""
    # Then it gets no HTTP data back
    assert not reply.startswith(b"HTTP/")
    assert b"BEGIN CERTIFICATE" not in reply


def test_an_agent_given_the_wrong_fingerprint_refuses_to_connect(fleet: Fleet) -> None:
    # Given an agent told to trust another CA
    proc = fleet.start_agent("pc-wrong", "--ca-fingerprint", "ab" * 32)
    # When it starts, Then it stops with a message, never enrolled
    wait_until(lambda: not proc.alive(), 30, "the agent to refuse")
    assert "does not match the fingerprint" in proc.output()
    assert not (fleet.root / "agents" / "pc-wrong" / "identity.json").exists()


def test_agents_and_task_servers_use_mutual_tls(fleet: Fleet, tmp_path: Path) -> None:
    # Given an approved task server and two agents on it
    ts = fleet.start_ts("ts-1")
    fleet.apply_policy("all", "pc-*", ["ts-1"])
    fleet.start_agent("pc-a")
    fleet.start_agent("pc-b")
    assigned = fleet.wait_assigned(["pc-a", "pc-b"])
    assert {c["task_server"] for c in assigned.values()} == {"ts-1"}
    cert_a, key_a, credential_a = _agent_files(fleet, "pc-a")
    _, _, credential_b = _agent_files(fleet, "pc-b")
    a_id = credential_a.split(".")[2]
    # Then each agent holds a certificate our CA issued, naming it
    cert = x509.load_pem_x509_certificates(cert_a.read_bytes())[0]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == f"agent:{a_id}"
    # and the task server serves a certificate of the CA, valid for its address
    with _client_with(fleet, ts.url, None) as client:
        assert client.get("/hello").status_code == 200
    poll = {"Authorization": f"Bearer {credential_a}"}
    # When the agent's credential is used without its certificate: refused by both
    for url, path in ((ts.url, "/agent/poll"), (fleet.ns_url, "/agent/poll")):
        with _client_with(fleet, url, None) as client:
            assert client.get(path, headers=poll).status_code == 401
    with _client_with(fleet, fleet.ns_url, None) as client:
        reply = client.post("/api/agent/assignment", headers=poll, json={})
        assert reply.status_code in (400, 401)
    # When A's certificate carries B's credential: refused (a node acts only as itself)
    with _client_with(fleet, ts.url, (cert_a, key_a)) as client:
        reply = client.get("/agent/poll", headers={"Authorization": f"Bearer {credential_b}"})
        assert reply.status_code == 403
        # and with its own credential it is served
        assert client.get("/agent/poll", headers=poll).status_code == 200
    with _client_with(fleet, fleet.ns_url, (cert_a, key_a)) as client:
        other = {"Authorization": f"Bearer {credential_b}"}
        body = {"facts": {"name": "pc-b", "hardware_id": "hw-pc-b"}}
        assert client.post("/api/agent/assignment", headers=other, json=body).status_code == 403
    # and the NS audits the claim, the one made to it and the one the task server reports
    refused = [e for e in fleet.api.get("/api/audit") if e["action"] == "certificate.refused"]
    assert refused and refused[0]["target"] == f"agent:{a_id}"

    def reported() -> bool:
        entries = fleet.api.get("/api/audit")
        return any(
            e["action"] == "agent.forbidden" and e["detail"].get("tried") == "certificate"
            for e in entries
        )

    wait_until(reported, 20, "the task server's refusal in the audit log")
    # When a certificate from no CA of ours, or an expired one of ours, is presented
    for forged in (
        _forged(tmp_path, f"agent:{a_id}"),
        _expired_from_ca(fleet, tmp_path, f"agent:{a_id}"),
    ):
        for url in (ts.url, fleet.ns_url):
            # Then the handshake fails: no request reaches the app
            with pytest.raises(httpx.HTTPError), _client_with(fleet, url, forged) as client:
                client.get("/agent/poll", headers=poll)


def test_approval_signs_and_revocation_cuts_a_task_server_off(fleet: Fleet) -> None:
    # Given a task server that is pending (R1)
    ts = fleet.start_ts("ts-1", approve=False)
    # Then it serves with a provisional certificate no node trusts
    with pytest.raises(httpx.HTTPError), _client_with(fleet, ts.url, None) as client:
        client.get("/hello")
    # When an admin approves it
    fleet.api.post("/api/taskservers/ts-1/approve")
    fleet.wait_available("ts-1")

    # Then within a heartbeat it serves the certificate approval signed
    def serves_ca_certificate() -> bool:
        with _client_with(fleet, ts.url, None) as client:
            return client.get("/hello").status_code == 200

    wait_until(serves_ca_certificate, 20, "ts-1 serving its CA certificate")
    # Given agents on it, and a second task server to fail over to
    fleet.start_ts("ts-2")
    fleet.apply_policy("all", "pc-*", ["ts-1", "ts-2"])
    fleet.start_agent("pc-1")
    assert fleet.wait_assigned(["pc-1"])["pc-1"]["task_server"] == "ts-1"
    time.sleep(3)  # its notification channel is open now
    # When an admin revokes ts-1
    revoked_at = time.monotonic()
    fleet.api.post("/api/taskservers/ts-1/revoke")
    # Then its certificate is on the CRL the NS publishes
    crl = fleet.api.get("/api/ca/crl")
    assert crl["number"] >= 1
    # and its agent moves to ts-2 within seconds, not at its channel's end (20 s)
    wait_until(
        lambda: fleet.computer("pc-1")["task_server"] == "ts-2", 15, "pc-1 failing over to ts-2"
    )
    assert time.monotonic() - revoked_at < 15
    # and the audit log has both steps
    actions = [e["action"] for e in fleet.api.get("/api/audit")]
    assert "taskserver.approve" in actions and "taskserver.revoke" in actions


def test_a_revoked_task_server_certificate_is_refused_by_the_ns(fleet: Fleet) -> None:
    # Given an approved task server that has its CA certificate
    ts = fleet.start_ts("ts-1")
    cert_file = ts.data_dir / pki.CERT_FILE
    wait_until(cert_file.exists, 20, "ts-1's certificate")
    credential = json.loads((ts.data_dir / "identity.json").read_text())["credential"]
    headers = {"Authorization": f"Bearer {credential}"}
    with _client_with(fleet, fleet.ns_url, (cert_file, ts.data_dir / pki.KEY_FILE)) as client:
        assert client.get("/api/ts/agents", headers=headers).status_code == 200
        # When an admin revokes it
        fleet.api.post("/api/taskservers/ts-1/revoke")
        # Then its calls are refused (the approval and the certificate both)
        reply = client.get("/api/ts/agents", headers=headers)
        assert reply.status_code in (401, 403)


def test_ca_show_and_rotate_keep_every_node_working(fleet: Fleet, tmp_path: Path) -> None:
    # Given a fleet with an agent on a task server, pinned to the first CA
    fleet.start_ts("ts-1")
    fleet.apply_policy("all", "pc-*", ["ts-1"])
    fleet.start_agent("pc-1")
    fleet.wait_assigned(["pc-1"])
    old_bundle = tmp_path / "old-bundle.pem"
    old_bundle.write_bytes(fleet.ca_bundle.read_bytes())
    # When an admin asks the CLI for the CA
    cli = [sys.executable, "-m", "taskfleet", "--ns", fleet.ns_url]
    cli += ["--credential", str(fleet.credential_file)]
    shown = subprocess.run([*cli, "ca", "show"], capture_output=True, text=True, timeout=60)
    # Then it prints the fingerprint the NS printed at its first start
    assert shown.returncode == 0, shown.stderr
    assert fleet.fingerprint in shown.stdout
    # When the CA is rotated
    rotated = subprocess.run([*cli, "ca", "rotate"], capture_output=True, text=True, timeout=60)
    assert rotated.returncode == 0, rotated.stderr
    new = fleet.api.get("/api/ca")
    # Then there is a new CA, and the old one is still in the bundle
    assert new["fingerprint"] != fleet.fingerprint
    assert new["fingerprint"] in rotated.stdout
    bundle = x509.load_pem_x509_certificates(new["bundle"].encode())
    assert [pki.fingerprint(c) for c in bundle] == [new["fingerprint"], fleet.fingerprint]
    # and a node that trusts only the old CA still verifies the NS (cross-signed chain)
    with httpx.Client(verify=ssl.create_default_context(cafile=str(old_bundle))) as client:
        assert client.get(f"{fleet.ns_url}/hello").status_code == 200
    # and the agent still runs tasks
    fleet.create_task("hello", "echo hello")
    run = fleet.wait_run(fleet.run("hello", ["pc-1"]))
    assert run["counts"] == {"Succeeded": 1}
    assert "ca.rotate" in [e["action"] for e in fleet.api.get("/api/audit")]


def test_re_enrolment_needs_the_computers_key(fleet: Fleet, tmp_path: Path) -> None:
    # Given an enrolled agent
    proc = fleet.start_agent("pc-k")
    first = fleet.wait_assigned(["pc-k"])["pc-k"]["id"]
    fleet.launcher.stop(proc)
    state = fleet.root / "agents" / "pc-k"
    # When an impostor with a key of its own claims its hardware id
    impostor = fleet.root / "agents" / "pc-k-impostor"
    impostor.mkdir(parents=True)
    shutil.copy(state / "hardware-id", impostor / "hardware-id")
    claim = fleet.launcher.start(
        "impostor", "agent", "run", "--ns", fleet.ns_url, "--state-dir", str(impostor),
        "--token-file", str(fleet.root / "agent.token"), "--name", "pc-k",
        "--startup-window", "0", *fleet.trust_args(),
    )  # fmt: skip
    # Then it is refused, and the refusal is audited
    wait_until(lambda: not claim.alive(), 30, "the impostor to be refused")
    assert "already enrolled" in claim.output()
    # When the computer itself lost its credential but kept its key (identity.json gone)
    (state / "identity.json").unlink()
    fleet.start_agent("pc-k")
    # Then its certificate request proves it, and it is the same computer again
    wait_until(lambda: (state / "identity.json").exists(), 30, "pc-k enrolled again")
    assert fleet.wait_assigned(["pc-k"])["pc-k"]["id"] == first


@pytest.mark.timeout(180)
def test_certificates_renew_before_they_expire(tmp_path: Path) -> None:
    # Given an NS that issues node certificates valid for one minute
    fleet = Fleet(tmp_path / "fleet", f"sqlite:///{tmp_path / 'ns.db'}")
    try:
        fleet.start_ns("--cert-days", str(60 / 86400))
        ts = fleet.start_ts("ts-1")
        fleet.apply_policy("all", "pc-*", ["ts-1"])
        fleet.start_agent("pc-1")
        fleet.wait_assigned(["pc-1"])
        agent_cert = fleet.root / "agents" / "pc-1" / pki.CERT_FILE
        ts_cert = ts.data_dir / pki.CERT_FILE

        def serial(path: Path) -> int:
            return x509.load_pem_x509_certificates(path.read_bytes())[0].serial_number

        first_agent, first_ts = serial(agent_cert), serial(ts_cert)
        # When two thirds of their life have passed
        # Then the agent and the task server hold new certificates, before the old expire
        wait_until(lambda: serial(agent_cert) != first_agent, 70, "the agent to renew")
        wait_until(lambda: serial(ts_cert) != first_ts, 70, "the task server to renew")
        # and the agent still runs tasks through the task server
        fleet.create_task("hello", "echo hello")
        run = fleet.wait_run(fleet.run("hello", ["pc-1"]))
        assert run["counts"] == {"Succeeded": 1}
    finally:
        fleet.stop()
