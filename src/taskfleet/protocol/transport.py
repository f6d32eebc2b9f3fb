"""Identity and transport: the one place that knows how peers prove who they are.

A peer proves who it is twice: with ``Authorization: Bearer
tf1.<kind>.<principal>.<secret>`` (the server stores only the SHA-256 of the
secret) and, over TLS, with the client certificate the NS's CA issued it
(``protocol.trust``), which the server checks names the same principal
(``server.peers``). Admins use the bearer credential alone.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import ssl
from dataclasses import dataclass
from typing import Literal

import httpx

PrincipalKind = Literal["agent", "taskserver", "admin"]
_KINDS = ("agent", "taskserver", "admin")
_PREFIX = "tf1"


@dataclass(frozen=True)
class Credential:
    kind: PrincipalKind
    principal: int
    secret: str

    def __str__(self) -> str:
        return f"{_PREFIX}.{self.kind}.{self.principal}.{self.secret}"

    @property
    def header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self}"}


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def parse_credential(text: str) -> Credential | None:
    """Parse a credential string (or an ``Authorization`` header value); None if malformed."""
    text = text.strip()
    if text.startswith("Bearer "):
        text = text[len("Bearer ") :].strip()
    parts = text.split(".", 3)
    if len(parts) != 4 or parts[0] != _PREFIX or parts[1] not in _KINDS:
        return None
    try:
        principal = int(parts[2])
    except ValueError:
        return None
    if not parts[3]:
        return None
    return Credential(parts[1], principal, parts[3])  # type: ignore[arg-type]


def client(
    base_url: str,
    credential: Credential | None = None,
    timeout: float = 30.0,
    max_connections: int = 20,
    tls: ssl.SSLContext | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """An HTTP client to a taskfleet server that presents ``credential``.

    Keep ``max_connections`` at or above the number of requests the caller can
    have in flight: a request queued inside the pool waits with no deadline of
    its own, and callers should bound their concurrency themselves instead.
    ``transport`` replaces the network (unit tests pass an ``httpx.MockTransport``).
    """
    headers = {"User-Agent": "taskfleet"}
    if credential is not None:
        headers.update(credential.header)
    # Plain HTTP needs no TLS context. Nodes pass theirs (the pinned CA, their client
    # certificate); others share the system's, loaded once per process, not per client.
    verify: ssl.SSLContext | bool = False
    if base_url.startswith("https:"):
        verify = tls if tls is not None else _tls_context()
    return httpx.AsyncClient(
        verify=verify,
        base_url=base_url.rstrip("/"),
        headers=headers,
        transport=transport,
        timeout=httpx.Timeout(timeout, connect=5.0),
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=min(10, max_connections),
        ),
    )


@functools.cache
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()
