"""Keys, certificate requests and TLS contexts: how a node proves who it is and whom it trusts.

Every node (task server, agent) makes its own key, which never leaves it, and
asks the NS's certificate authority to sign a request (CSR) for it. The
certificate names the node in its subject: ``CN=agent:42`` or
``CN=taskserver:3``, so a server that sees the certificate on a connection
knows who is calling before it reads a byte of the request.

Trust starts from one value given at install: the SHA-256 fingerprint of the
NS's CA certificate. A node fetches the CA bundle once without verification,
checks the fingerprint, keeps the bundle, and from then on verifies every
server against it (``NodeTrust``). There is no fallback to an unverified or
plain-HTTP connection: a mismatch stops the node with a message.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from taskfleet.errors import InvalidInput

NodeKind = Literal["agent", "taskserver"]
ORGANISATION = "taskfleet"
KEY_FILE = "tls.key"
CERT_FILE = "tls.crt"
CA_FILE = "ca.pem"
PrivateKey = ec.EllipticCurvePrivateKey


def new_key() -> PrivateKey:
    """A P-256 key: signing and handshakes cost a fraction of RSA's, at a fleet's scale."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def subject_name(kind: str, principal: int) -> str:
    return f"{kind}:{principal}"


def csr_pem(key: PrivateKey, kind: NodeKind, principal: int = 0) -> str:
    """A certificate request for ``key``. The NS sets the subject it signs itself (the
    node's id is its to give), so the name asked for here is informative only."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
            x509.NameAttribute(NameOID.COMMON_NAME, subject_name(kind, principal)),
        ]
    )
    request = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return request.public_bytes(serialization.Encoding.PEM).decode()


def pem_of(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER form, as 64 lower-case hex digits."""
    return cert.fingerprint(hashes.SHA256()).hex()


def normalise_fingerprint(text: str) -> str:
    """Accept ``AB:CD:…``, ``sha256:abcd…`` or plain hex; return 64 lower-case hex digits."""
    value = text.strip().lower()
    value = value.removeprefix("sha256:").replace(":", "").replace(" ", "")
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise InvalidInput(
            f"CA fingerprint {text!r} is not a SHA-256 fingerprint (64 hex digits); "
            "copy it from the NS's first start or 'taskfleet ca show'",
            field="ca_fingerprint",
        )
    return value


def load_certificates(pem: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise InvalidInput(f"not a PEM certificate bundle: {exc}") from exc


def check_bundle(pem: bytes, wanted: str) -> list[x509.Certificate]:
    """The certificate of ``pem`` whose fingerprint is ``wanted`` (as a one-item list).

    A bundle holds the current CA first and, after a rotation, the CAs before it; the
    installed fingerprint may be any of them (an agent installed before a rotation).
    The others are not returned: the bundle was fetched unverified, and only the pinned
    certificate is vouched for. Later bundles come over verified connections.
    """
    certs = load_certificates(pem)
    matching = [c for c in certs if fingerprint(c) == wanted]
    if not matching:
        got = ", ".join(fingerprint(c) for c in certs) or "none"
        raise InvalidInput(
            f"the NS's CA does not match the fingerprint this node was given ({wanted}); it "
            f"presented {got}. Refusing to connect: this may not be your NS. Check "
            "'taskfleet ca show' on the NS and the --ca-fingerprint given here."
        )
    # Only the pinned one: anything else in an unverified download may be an attacker's.
    return matching


@dataclass(frozen=True)
class PeerCertificate:
    """The verified client certificate on a connection, read once per connection."""

    kind: str
    principal: int
    serial: int
    not_after: float


def peer_of(der: bytes | None) -> PeerCertificate | None:
    """Who a (CA-verified) client certificate names; None for none or a foreign name."""
    if not der:
        return None
    cert = x509.load_der_x509_certificate(der)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        return None
    kind, _, principal = str(names[0].value).partition(":")
    if kind not in ("agent", "taskserver", "admin") or not principal.isdigit():
        return None
    return PeerCertificate(
        kind, int(principal), cert.serial_number, cert.not_valid_after_utc.timestamp()
    )


def needs_renewal(cert: x509.Certificate, now: datetime.datetime | None = None) -> bool:
    """True once less than a third of the certificate's life is left."""
    now = now or datetime.datetime.now(datetime.UTC)
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    return cert.not_valid_after_utc - now < life / 3


def client_context(ca_file: Path, cert_file: Path | None, key_file: Path | None) -> ssl.SSLContext:
    """A client context that trusts only the CA bundle and presents the node's certificate."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file is not None and key_file is not None and cert_file.exists():
        ctx.load_cert_chain(str(cert_file), str(key_file))
    return ctx


def server_context(
    cert_file: Path, key_file: Path, ca_file: Path, client_certs: ssl.VerifyMode
) -> ssl.SSLContext:
    """A server context; ``client_certs`` CERT_REQUIRED refuses a connection without a
    certificate from our CA in the handshake, CERT_OPTIONAL lets the app decide per route."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_file), str(key_file))
    ctx.load_verify_locations(cafile=str(ca_file))
    ctx.verify_mode = client_certs
    return ctx


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def issue(
    key: PrivateKey,
    issuer: x509.Certificate | None,
    subject: x509.Name,
    public_key: object,
    *,
    days: float,
    ca: bool = False,
    hosts: list[str] | None = None,
    server: bool = False,
    valid_from: datetime.datetime | None = None,
) -> x509.Certificate:
    """A certificate for ``public_key`` signed with ``key``: by ``issuer``, or self-signed.

    Valid from five minutes ago (clocks drift a little), or ``valid_from``, for ``days``
    (negative: already expired, which tests use). A leaf may authenticate clients, and
    servers too when ``server``; ``hosts`` become its subject alternative names.
    """
    now = datetime.datetime.now(datetime.UTC)
    start = valid_from or now - datetime.timedelta(minutes=5)
    assert isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
    else:
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([general_name(h) for h in hosts]), critical=False
        )
    return builder.sign(key, hashes.SHA256())


def general_name(host: str) -> x509.GeneralName:
    """An IP address or a DNS name, as a subject alternative name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return x509.DNSName(host)
