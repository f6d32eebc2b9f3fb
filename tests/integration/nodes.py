"""Nodes made of plain HTTP calls, for tests that send what a real node would not.

A ``RawAgent`` enrols, asks for its task server, polls and posts status as an agent
does, with whatever facts, proofs and bodies a test gives it; over TLS it sends a
certificate request and presents the certificate it is issued, like a real agent.
"""

from __future__ import annotations

import ssl
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from taskfleet.protocol import pki
from tests.fleet import Fleet


def client(fleet: Fleet, url: str, cert: tuple[Path, Path] | None = None) -> httpx.Client:
    """A client to ``url`` that trusts the fleet's CA (over TLS), presenting ``cert``."""
    if not fleet.tls:
        return httpx.Client(base_url=url, timeout=30)
    context = ssl.create_default_context(cafile=str(fleet.ca_bundle))
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    return httpx.Client(base_url=url, verify=context, timeout=30)


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def registration(
    fleet: Fleet,
    token: str,
    name: str,
    hardware_id: str,
    url: str,
    key: pki.PrivateKey | None = None,
) -> Any:
    """A task server's registration body (with a certificate request over TLS, for
    ``key``: the same server keeps its key)."""
    body: dict[str, Any] = {
        "token": token,
        "facts": {"name": name, "hardware_id": hardware_id, "addresses": []},
        "url": url,
    }
    if fleet.tls:
        body["csr"] = pki.csr_pem(key or pki.new_key(), "taskserver")
    return body


@dataclass
class RawAgent:
    fleet: Fleet
    name: str
    hardware_id: str = ""
    credential: str = ""
    computer_id: int = 0
    key: pki.PrivateKey = field(default_factory=pki.new_key)
    address: str = "10.77.0.1/24"

    def __post_init__(self) -> None:
        self.hardware_id = self.hardware_id or f"hw-{self.name}"
        self.dir = self.fleet.root / "raw" / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / pki.KEY_FILE).write_bytes(pki.key_pem(self.key))

    @property
    def facts(self) -> dict[str, Any]:
        return {"name": self.name, "hardware_id": self.hardware_id, "addresses": [self.address]}

    def enrol(self, token: str, proof: str = "", ns_url: str = "") -> httpx.Response:
        """Enrol with ``token``, presenting ``proof`` (a credential) if given."""
        body: dict[str, Any] = {"token": token, "facts": self.facts}
        if self.fleet.tls:
            body["csr"] = pki.csr_pem(self.key, "agent")
        with client(self.fleet, ns_url or self.fleet.ns_url) as ns:
            reply = ns.post("/api/agent/enrol", json=body, headers=bearer(proof) if proof else {})
        if reply.status_code == 200:
            data = reply.json()
            self.credential, self.computer_id = data["credential"], data["computer_id"]
            if data.get("certificate"):
                (self.dir / pki.CERT_FILE).write_text(data["certificate"])
        return reply

    def cert(self) -> tuple[Path, Path] | None:
        cert = self.dir / pki.CERT_FILE
        return (cert, self.dir / pki.KEY_FILE) if self.fleet.tls and cert.exists() else None

    def call(
        self, url: str, method: str, path: str, credential: str = "", **kwargs: Any
    ) -> httpx.Response:
        """A request as this agent (its certificate, and ``credential`` or its own)."""
        with client(self.fleet, url, self.cert()) as http:
            headers = bearer(credential or self.credential)
            return http.request(method, path, headers=headers, **kwargs)

    def ask(self, facts: dict[str, Any] | None = None) -> httpx.Response:
        """Which task server to use (R3)."""
        body = {"facts": facts or self.facts}
        return self.call(self.fleet.ns_url, "POST", "/api/agent/assignment", json=body)

    def status(self, url: str, instance_id: int, computer_id: int = 0) -> httpx.Response:
        """Report an instance Succeeded, naming ``computer_id`` (default: its own)."""
        event = {
            "id": uuid.uuid4().hex,
            "instance_id": instance_id,
            "computer_id": computer_id or self.computer_id,
            "state": "Succeeded",
            "at": 1_800_000_000.0,
            "return_code": 0,
            "output": "not mine to say",
        }
        return self.call(url, "POST", "/agent/status", json={"events": [event]})
