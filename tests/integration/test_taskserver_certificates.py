"""Task servers with a certificate no node should accept (issue 8): self-signed, from
another CA, expired, revoked, another node's. Refused by the NS, and by agents, which
fail over (R4). Real NS, task servers and agents, TLS on 127.0.0.1."""

from __future__ import annotations

import datetime
import http.server
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from taskfleet.cli.launcher import Proc, wait_until
from taskfleet.protocol import pki
from tests.fleet import Fleet, TaskServerProc
from tests.integration.test_tls import _client_with

ORIGINS = ["self-signed", "another CA", "expired"]
# What OpenSSL says about each, as a verifying peer sees it.
VERIFY_ERRORS = {
    "self-signed": "self-signed certificate",
    "another CA": "unable to get local issuer certificate",
    "expired": "certificate has expired",
}


def _bad_certificate(fleet: Fleet, node: Path, origin: str, out: Path) -> tuple[Path, Path]:
    """The node's certificate made again for its own key, by ``origin``: itself, another
    CA, or our CA with a validity that has ended. Written to ``out`` (certificate, key)."""
    key = serialization.load_pem_private_key((node / pki.KEY_FILE).read_bytes(), None)
    assert isinstance(key, pki.PrivateKey)
    mine = x509.load_pem_x509_certificates((node / pki.CERT_FILE).read_bytes())[0]
    valid_from, days = None, 1.0
    if origin == "self-signed":
        issuer_key, issuer = key, None
    elif origin == "another CA":
        issuer_key = pki.new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "another CA")])
        issuer = pki.issue(issuer_key, None, name, issuer_key.public_key(), days=30, ca=True)
    else:
        ca = fleet.root / "ns" / "ca"
        issuer_key = serialization.load_pem_private_key((ca / "ca.key").read_bytes(), None)  # type: ignore[assignment]
        issuer = x509.load_pem_x509_certificate((ca / "ca.crt").read_bytes())
        valid_from = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=10)
        days = -1.0
    assert isinstance(issuer_key, pki.PrivateKey)
    cert = pki.issue(
        issuer_key,
        issuer,
        mine.subject,
        key.public_key(),
        days=days,
        valid_from=valid_from,
        hosts=["127.0.0.1"],
        server=True,
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / pki.CERT_FILE).write_bytes(pki.pem_of(cert))
    (out / pki.KEY_FILE).write_bytes(pki.key_pem(key))
    return out / pki.CERT_FILE, out / pki.KEY_FILE


def _credential(ts: TaskServerProc) -> dict[str, str]:
    credential = json.loads((ts.data_dir / "identity.json").read_text())["credential"]
    return {"Authorization": f"Bearer {credential}"}


def _restart_with(fleet: Fleet, ts: TaskServerProc, files: tuple[Path, Path]) -> tuple[Proc, str]:
    """Stop ``ts``, put ``files`` in its data directory, start it again (not approving it
    again: approval signs a new certificate); the new process, what it logged."""
    fleet.launcher.stop(ts.proc)
    (ts.data_dir / pki.CERT_FILE).write_bytes(files[0].read_bytes())
    before = len(ts.proc.output())
    try:
        fleet.start_ts(ts.name, approve=False)
    except RuntimeError:  # it exited at start (wait_http says so)
        pass
    proc = fleet.launcher.procs[-1]
    return proc, proc.output()[before:]


@pytest.mark.parametrize("origin", ["self-signed", "another CA"])
def test_a_task_server_with_a_certificate_from_no_ca_of_ours_is_refused(
    fleet: Fleet, tmp_path: Path, origin: str
) -> None:
    # Given an approved task server, and its certificate made again by ``origin``
    ts = fleet.start_ts("ts-1")
    bad = _bad_certificate(fleet, ts.data_dir, origin, tmp_path / "bad")
    # Then the NS refuses it in the TLS handshake: no request reaches its application
    with pytest.raises(httpx.HTTPError), _client_with(fleet, fleet.ns_url, bad) as client:
        client.post("/api/ts/heartbeat", headers=_credential(ts), json={})
    # When the task server is restarted with it in its data directory
    fleet.launcher.stop(ts.proc)
    heard = {r["name"]: r for r in fleet.api.get("/api/taskservers")}["ts-1"]["last_heartbeat"]
    audited = len(fleet.api.get("/api/audit"))
    proc, log = _restart_with(fleet, ts, bad)
    # Then it stops, saying why, without a traceback
    wait_until(lambda: not proc.alive(), 20, "ts-1 to stop")
    said = "self-signed" if origin == "self-signed" else "from another CA"
    assert f"is not from the NS's CA ({said}, issuer" in log
    assert "Traceback" not in log
    # and the NS stored nothing from it
    rows = {r["name"]: r for r in fleet.api.get("/api/taskservers")}
    assert rows["ts-1"]["last_heartbeat"] == heard
    assert len(fleet.api.get("/api/audit")) == audited


def test_a_task_server_with_an_expired_certificate_presents_none_and_is_given_a_new_one(
    fleet: Fleet, tmp_path: Path
) -> None:
    # Given an approved task server, and its certificate expired (our CA, its key)
    ts = fleet.start_ts("ts-1")
    expired = _bad_certificate(fleet, ts.data_dir, "expired", tmp_path / "bad")
    # Then the NS refuses the expired certificate in the TLS handshake
    with pytest.raises(httpx.HTTPError), _client_with(fleet, fleet.ns_url, expired) as client:
        client.post("/api/ts/heartbeat", headers=_credential(ts), json={})
    # When the task server is restarted with it
    proc, log = _restart_with(fleet, ts, expired)
    # Then it says it is expired, presents none, and its heartbeat brings a valid one
    assert "expired on" in log and "presenting none" in log
    fleet.wait_serving(ts)
    cert = x509.load_pem_x509_certificates((ts.data_dir / pki.CERT_FILE).read_bytes())[0]
    assert cert.not_valid_after_utc > datetime.datetime.now(datetime.UTC)
    assert proc.alive() and "Traceback" not in proc.output()


def test_a_revoked_or_another_task_servers_certificate_is_refused_and_audited(
    fleet: Fleet, tmp_path: Path
) -> None:
    # Given two approved task servers; ts-1's certificate kept aside
    ts1, ts2 = fleet.start_ts("ts-1"), fleet.start_ts("ts-2")
    old = tmp_path / pki.CERT_FILE, ts1.data_dir / pki.KEY_FILE
    old[0].write_bytes((ts1.data_dir / pki.CERT_FILE).read_bytes())
    # When an admin revokes ts-1
    fleet.api.post("/api/taskservers/ts-1/revoke")
    # Then the task server hears it and stops serving
    wait_until(lambda: "approval: revoked" in ts1.proc.output(), 20, "ts-1 to hear")
    # When it is approved again: a new certificate, which its heartbeat brings
    fleet.api.post("/api/taskservers/ts-1/approve")
    wait_until(
        lambda: (ts1.data_dir / pki.CERT_FILE).read_bytes() != old[0].read_bytes(),
        20,
        "ts-1's new certificate",
    )
    # Then its revoked certificate is refused at the NS, and audited
    with _client_with(fleet, fleet.ns_url, old) as client:
        assert client.get("/api/ts/agents", headers=_credential(ts1)).status_code == 401
    # and so is ts-2's certificate with ts-1's credential (a node acts only as itself)
    theirs = ts2.data_dir / pki.CERT_FILE, ts2.data_dir / pki.KEY_FILE
    with _client_with(fleet, fleet.ns_url, theirs) as client:
        assert client.get("/api/ts/agents", headers=_credential(ts1)).status_code == 403
    ts1_id, ts2_id = (
        json.loads((ts.data_dir / "identity.json").read_text())["task_server_id"]
        for ts in (ts1, ts2)
    )
    refused = [
        (e["actor"], e["target"], e["detail"]["reason"])
        for e in fleet.api.get("/api/audit")
        if e["action"] == "certificate.refused"
    ]
    assert sorted(refused) == [
        (
            f"taskserver:{ts1_id}",
            f"taskserver:{ts1_id}",
            f"the client certificate of taskserver:{ts1_id} is revoked; an admin must reset "
            "or re-approve this node before it can enrol again",
        ),
        (
            f"taskserver:{ts1_id}",
            f"taskserver:{ts2_id}",
            f"the client certificate names taskserver:{ts2_id} but the credential is "
            f"taskserver:{ts1_id}: a node may act only as itself",
        ),
    ]


@contextmanager
def _impostor(port: int, cert: Path, key: Path) -> Iterator[list[str]]:
    """An HTTPS server on ``port`` presenting ``cert``; the paths of requests that reached it."""
    reached: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            reached.append(self.path)
            self.send_response(200)
            self.end_headers()

        do_POST = do_GET  # noqa: N815

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.handle_error = lambda *_: None  # type: ignore[method-assign]  # refused handshakes
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield reached
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("origin", ORIGINS)
def test_an_agent_refuses_a_task_server_certificate_and_fails_over(
    fleet: Fleet, tmp_path: Path, origin: str
) -> None:
    # Given an agent on ts-1, and ts-2 to fail over to
    ts1 = fleet.start_ts("ts-1")
    fleet.start_ts("ts-2")
    fleet.apply_policy("all", "pc-*", ["ts-1", "ts-2"])
    agent = fleet.start_agent("pc-1")
    assert fleet.wait_assigned(["pc-1"])["pc-1"]["task_server"] == "ts-1"
    # When ts-1's address serves ts-1's certificate made again by ``origin``
    bad = _bad_certificate(fleet, ts1.data_dir, origin, tmp_path / "bad")
    fleet.launcher.stop(ts1.proc)
    with _impostor(ts1.port, *bad) as reached:
        # Then the agent refuses it and asks the NS for another task server (R4)
        wait_until(lambda: fleet.computer("pc-1")["task_server"] == "ts-2", 60, "a failover")
    # with the reason, in the assignment and in its log; and no downgrade: nothing, not
    # even its credential, reached the server it refused
    reason = fleet.computer("pc-1")["assign_reason"]
    assert f"certificate verify failed: {VERIFY_ERRORS[origin]}" in reason
    assert VERIFY_ERRORS[origin] in agent.output()
    assert reached == []
