"""The NS's certificate authority: its key, the certificates it signs, its revocation list.

Files, in ``<data_dir>/ca`` (keys 0600, never sent anywhere)::

    ca.key  ca.crt         the current CA (self-signed, 10 years)
    bundle.pem             every CA nodes must trust: the current one first, then
                           those it replaced (``rotate``), so nodes enrolled under an
                           older CA keep working until they renew
    cross.crt              after a rotation: the current CA signed by the one before,
                           sent in the NS's chain so nodes that trust only the old CA
                           still verify the NS
    ns.key  ns.crt         the NS's own server certificate, re-issued when it nears
                           expiry, its host names change or the CA rotates

NS replicas share one CA: copy this directory to each (docs/security.md). Which
certificates were issued and revoked is in the database (``ns.certificates``).
"""

from __future__ import annotations

import datetime
import logging
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from taskfleet.errors import InvalidInput
from taskfleet.protocol import pki
from taskfleet.protocol.private_file import write_private

log = logging.getLogger("taskfleet.ns")
CA_DAYS = 3650
SERVER_DAYS = 365
NODE_DAYS = 90.0
_UTC = datetime.UTC


@dataclass(frozen=True)
class Issued:
    pem: str
    serial: int
    not_after: float


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, pki.ORGANISATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_id(public_key: object) -> str:
    """SHA-256 of a public key's DER form: how the NS recognises a node's key again."""
    assert isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pki.sha256_hex(der)


def read_csr(text: str) -> x509.CertificateSigningRequest:
    """A CSR whose signature proves the sender holds the key, with a key we accept."""
    try:
        csr = x509.load_pem_x509_csr(text.encode())
        key = csr.public_key()
        valid = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidInput(
            f"csr is not a PEM certificate request we accept: {exc}", field="csr"
        ) from exc
    if not valid:
        raise InvalidInput("csr signature does not verify", field="csr")
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
        raise InvalidInput("csr key is RSA below 2048 bits", field="csr")
    if isinstance(key, ec.EllipticCurvePublicKey) and not isinstance(key.curve, ec.SECP256R1):
        raise InvalidInput(f"csr key is on curve {key.curve.name}; use P-256", field="csr")
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise InvalidInput("csr key must be EC (P-256) or RSA", field="csr")
    return csr


class Authority:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.key: pki.PrivateKey = serialization.load_pem_private_key(  # type: ignore[assignment]
            (directory / "ca.key").read_bytes(), None
        )
        self.cert = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
        self.bundle_pem = (directory / "bundle.pem").read_bytes()
        cross = directory / "cross.crt"
        self.cross_pem = cross.read_bytes() if cross.exists() else b""

    @classmethod
    def load_or_create(cls, directory: Path) -> tuple[Authority, bool]:
        """The CA in ``directory``, made on first start; True when it was just made."""
        created = not (directory / "ca.key").exists()
        if created:
            key = pki.new_key()
            cert = _self_signed(key)
            write_private(directory / "ca.key", pki.key_pem(key))
            write_private(directory / "ca.crt", _pem(cert))
            write_private(directory / "bundle.pem", _pem(cert))
            (directory / "ca.key").chmod(0o600)
        return cls(directory), created

    @property
    def fingerprint(self) -> str:
        return pki.fingerprint(self.cert)

    @property
    def bundle(self) -> list[x509.Certificate]:
        return pki.load_certificates(self.bundle_pem)

    def rotate(self) -> None:
        """Make a new CA; keep the old ones in the bundle and cross-sign the new one."""
        key = pki.new_key()
        cert = _self_signed(key)
        cross = pki.issue(
            self.key,
            self.cert,
            cert.subject,
            key.public_key(),
            days=CA_DAYS,
            ca=True,
        )
        write_private(self.dir / "ca.key", pki.key_pem(key))
        write_private(self.dir / "ca.crt", _pem(cert))
        # Every cross certificate, newest first: a node that trusts only the first CA
        # still builds a chain after several rotations.
        write_private(self.dir / "cross.crt", _pem(cross) + self.cross_pem)
        write_private(self.dir / "bundle.pem", _pem(cert) + self.bundle_pem)
        (self.dir / "ns.crt").unlink(missing_ok=True)  # re-issued under the new CA
        self.__init__(self.dir)  # type: ignore[misc]

    def issue(
        self,
        csr: x509.CertificateSigningRequest,
        kind: str,
        principal: int,
        days: float = NODE_DAYS,
        hosts: Iterable[str] = (),
    ) -> Issued:
        """Sign ``csr`` for node ``kind:principal``: the subject is ours to set, not the CSR's."""
        hosts = list(hosts)
        cert = pki.issue(
            self.key,
            self.cert,
            _name(pki.subject_name(kind, principal)),
            csr.public_key(),
            days=days,
            hosts=hosts,
            server=bool(hosts),
        )
        return Issued(
            _pem(cert).decode() + self.cross_pem.decode(),
            cert.serial_number,
            cert.not_valid_after_utc.timestamp(),
        )

    def server_files(self, hosts: Iterable[str]) -> tuple[Path, Path]:
        """The NS's own certificate and key for ``hosts``, (re-)issued when needed."""
        hosts = sorted({*hosts, "localhost", "127.0.0.1", socket.gethostname()})
        cert_file, key_file = self.dir / "ns.crt", self.dir / "ns.key"
        if not _still_good(cert_file, self.cert, hosts):
            key = pki.new_key()
            cert = pki.issue(
                self.key,
                self.cert,
                _name("notification-server"),
                key.public_key(),
                days=SERVER_DAYS,
                hosts=hosts,
                server=True,
            )
            write_private(key_file, pki.key_pem(key))
            write_private(cert_file, _pem(cert) + self.cross_pem)
        return cert_file, key_file

    def crl_pem(self, revoked: Iterable[tuple[int, float]], number: int) -> bytes:
        """The revocation list of ``(serial, revoked_at)``, signed, valid one day."""
        now = datetime.datetime.now(_UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - datetime.timedelta(minutes=5))
            .next_update(now + datetime.timedelta(days=1))
            .add_extension(x509.CRLNumber(number), critical=False)
        )
        for serial, at in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(datetime.datetime.fromtimestamp(at, _UTC))
                .build()
            )
        return builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _self_signed(key: pki.PrivateKey) -> x509.Certificate:
    name = _name(f"taskfleet CA {datetime.datetime.now(_UTC):%Y-%m-%d %H:%M:%S}")
    return pki.issue(key, None, name, key.public_key(), days=CA_DAYS, ca=True)


def _still_good(cert_file: Path, ca: x509.Certificate, hosts: list[str]) -> bool:
    try:
        cert = x509.load_pem_x509_certificates(cert_file.read_bytes())[0]
    except (FileNotFoundError, ValueError):
        return False
    if cert.issuer != ca.subject or pki.needs_renewal(cert):
        return False
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have = {str(n.value) for n in names}
    return all(str(pki.general_name(h).value) in have for h in hosts)
