"""The task server's TLS: the certificate it serves agents with, and the server context.

Until approval signs its request (R1) it has no certificate from the CA, so it
serves with a provisional self-signed one that no agent accepts: correct, since
no agent may use it yet. The certificate approval brings (in a heartbeat reply)
is loaded into the same context, so later connections get it without a restart.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from taskfleet.protocol import pki
from taskfleet.protocol.private_file import write_private
from taskfleet.protocol.trust import NodeTrust

PROVISIONAL_FILE = "provisional.crt"


def server_context(trust: NodeTrust) -> ssl.SSLContext:
    """Agents must present a certificate of the CA on agent routes (server.peers);
    /hello and /metrics stay open to monitoring without one. A certificate no peer
    would accept stops the task server here, with the reason (``check_certificate``)."""
    trust.check_certificate()
    cert_file = trust.cert_file if trust.cert_file.exists() else _provisional(trust)
    return pki.server_context(cert_file, trust.key_file, trust.ca_file, ssl.CERT_OPTIONAL)


def use_certificate(context: ssl.SSLContext, trust: NodeTrust) -> None:
    context.load_cert_chain(str(trust.cert_file), str(trust.key_file))
    context.load_verify_locations(cafile=str(trust.ca_file))


def _provisional(trust: NodeTrust) -> Path:
    key = trust.key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "taskserver awaiting approval")])
    cert = pki.issue(key, None, name, key.public_key(), days=30, server=True)
    path = trust.dir / PROVISIONAL_FILE
    write_private(path, pki.pem_of(cert))
    return path
