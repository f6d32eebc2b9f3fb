"""Which node is on the other end of a connection: its client certificate, checked.

The HTTP protocol (``server.capacity.Guarded``) reads the client certificate of a
TLS connection once, when the connection is made, and puts it in every request's
scope under ``PEER_EXTENSION``. The TLS handshake has already verified that it
chains to the NS's CA; here a route checks that it names the same node as the
credential presented, and that it is not revoked.

Over plain HTTP (``--insecure-http``, a warned-about test mode) there is no
certificate and the credential alone identifies the caller.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from taskfleet.errors import Forbidden, Unauthenticated
from taskfleet.protocol.pki import PeerCertificate

PEER_EXTENSION = "taskfleet.peer"
TLS_EXTENSION = "taskfleet.tls"  # set by the protocol for a TLS connection, whatever headers say


def peer_of(scope: Any) -> PeerCertificate | None:
    extensions = scope.get("extensions") or {}
    peer: PeerCertificate | None = extensions.get(PEER_EXTENSION)
    return peer


def is_tls(scope: Any) -> bool:
    """Did the request come over a TLS connection? Decided by the connection (set by
    ``server.capacity.Guarded``), or the scheme where another server runs the app."""
    extensions = scope.get("extensions") or {}
    return bool(extensions.get(TLS_EXTENSION) or scope.get("scheme") == "https")


def check_peer(scope: Any, kind: str, principal: int, revoked: Container[int]) -> None:
    """Over TLS, the caller must present the certificate issued to ``kind:principal``."""
    if not is_tls(scope):
        return
    peer = peer_of(scope)
    if peer is None:
        raise Unauthenticated(
            f"this call needs the {kind}'s client certificate (mutual TLS): the NS issues "
            "it at enrolment; start the node with its state directory, or enrol it again"
        )
    if peer.kind != kind or peer.principal != principal:
        raise Forbidden(
            f"the client certificate names {peer.kind}:{peer.principal} but the credential "
            f"is {kind}:{principal}: a node may act only as itself"
        )
    if peer.serial in revoked:
        raise Unauthenticated(
            f"the client certificate of {kind}:{principal} is revoked; an admin must "
            "reset or re-approve this node before it can enrol again"
        )
