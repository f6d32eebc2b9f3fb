"""A node's trust store and identity on disk: the pinned CA bundle, its key, its certificate.

Files in the node's state directory (all 0600)::

    ca.pem     the CA bundle, fetched once and checked against --ca-fingerprint
    tls.key    the node's key, made on first start; it never leaves the node
    tls.crt    its certificate chain, from the NS (enrolment, approval, renewal)
    crl.pem    the latest revocation list (task servers)

A node over TLS refuses plain ``http://`` URLs, for the NS and for task servers
alike: with ``--insecure-http`` it speaks only plain HTTP, and says so.
"""

from __future__ import annotations

import logging
import ssl
import time
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from taskfleet.errors import InvalidInput, Unavailable
from taskfleet.protocol import pki
from taskfleet.protocol.private_file import write_private

log = logging.getLogger("taskfleet.trust")
CRL_FILE = "crl.pem"


class NodeTrust:
    def __init__(
        self,
        state_dir: Path,
        ns_url: str,
        ca_fingerprint: str = "",
        insecure_http: bool = False,
        kind: pki.NodeKind = "agent",
    ) -> None:
        self.dir = state_dir
        self.ns_url = ns_url.rstrip("/")
        self.insecure = insecure_http
        self.kind: pki.NodeKind = kind
        self.fingerprint = pki.normalise_fingerprint(ca_fingerprint) if ca_fingerprint else ""
        self.check_url(self.ns_url, "--ns")
        self.ca_file = state_dir / pki.CA_FILE
        self.key_file = state_dir / pki.KEY_FILE
        self.cert_file = state_dir / pki.CERT_FILE
        self.revoked: frozenset[int] = frozenset()
        self.crl_number = -1
        self._context: ssl.SSLContext | None = None
        self._key: pki.PrivateKey | None = None

    @property
    def tls(self) -> bool:
        return not self.insecure

    def check_url(self, url: str, what: str) -> None:
        """No silent downgrade: a TLS node never talks plain HTTP, nor the reverse."""
        if self.insecure and not url.startswith("http://"):
            raise InvalidInput(f"{what} {url}: with --insecure-http give an http:// URL")
        if not self.insecure and not url.startswith("https://"):
            raise InvalidInput(
                f"{what} {url}: taskfleet nodes talk only HTTPS to servers of the NS's CA; "
                "give an https:// URL (plain HTTP only when everything runs --insecure-http)"
            )

    # --- the CA bundle ----------------------------------------------------------------

    async def bootstrap(self) -> None:
        """Have a CA bundle: the one kept, or fetched and checked against the fingerprint."""
        if self.insecure:
            return
        if self.ca_file.exists():
            if self.fingerprint:
                pki.check_bundle(self.ca_file.read_bytes(), self.fingerprint)
            return
        if not self.fingerprint:
            raise InvalidInput(
                "this node has no CA yet: start it with --ca-fingerprint FINGERPRINT (the NS "
                "prints it at its first start; 'taskfleet ca show' prints it again)"
            )
        # Fetched without verification: what makes it trustworthy is the fingerprint.
        try:
            async with httpx.AsyncClient(verify=False, timeout=15.0) as client:
                reply = await client.get(f"{self.ns_url}/api/ca")
                reply.raise_for_status()
                bundle = str(reply.json()["bundle"]).encode()
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            raise Unavailable(f"could not fetch the CA from {self.ns_url}: {exc}") from exc
        pinned = pki.check_bundle(bundle, self.fingerprint)
        write_private(self.ca_file, b"".join(pki.pem_of(c) for c in pinned))
        log.info("CA bundle fetched from %s and matched the fingerprint", self.ns_url)

    def store_bundle(self, bundle: str) -> None:
        """A new bundle (after a CA rotation), received over a verified connection."""
        if not bundle or self.insecure:
            return
        pki.load_certificates(bundle.encode())  # refuse garbage before it replaces anything
        write_private(self.ca_file, bundle.encode())
        if self._context is not None:
            self._context.load_verify_locations(cafile=str(self.ca_file))

    def bundle_id(self) -> str:
        return pki.sha256_hex(self.ca_file.read_bytes()) if self.ca_file.exists() else ""

    # --- the node's own key and certificate ---------------------------------------------

    def key(self) -> pki.PrivateKey:
        if self._key is None:
            if self.key_file.exists():
                loaded = serialization.load_pem_private_key(self.key_file.read_bytes(), None)
                assert isinstance(loaded, pki.PrivateKey)
                self._key = loaded
            else:
                self._key = pki.new_key()
                write_private(self.key_file, pki.key_pem(self._key))
        return self._key

    def csr(self, principal: int = 0) -> str:
        return "" if self.insecure else pki.csr_pem(self.key(), self.kind, principal)

    def certificate(self) -> x509.Certificate | None:
        try:
            return pki.load_certificates(self.cert_file.read_bytes())[0]
        except (FileNotFoundError, InvalidInput, IndexError):
            return None

    def serial(self) -> str:
        cert = self.certificate()
        return str(cert.serial_number) if cert is not None else ""

    def check_certificate(self) -> None:
        """Refuse to start with a certificate every handshake would refuse: one not for
        this node's key, or not from the NS's CA (self-signed, another CA). Over TLS 1.3
        the peer just closes the connection, so without this the node could only log an
        empty "ReadError". An expired one is only noted: it is not presented
        (``context``), and the NS renews it."""
        cert = self.certificate()
        if self.insecure or cert is None:
            return
        if cert.public_key() != self.key().public_key():
            raise InvalidInput(f"{self.cert_file} is not for this node's key {self.key_file}")
        cas = pki.load_certificates(self.ca_file.read_bytes())
        if not any(_issued_by(cert, ca) for ca in cas):
            origin = "self-signed" if cert.issuer == cert.subject else "from another CA"
            raise InvalidInput(
                f"{self.cert_file} is not from the NS's CA ({origin}, issuer "
                f"{cert.issuer.rfc4514_string()}): the NS and agents would refuse it in "
                "every TLS handshake; restore this node's own certificate, or remove it "
                "to be sent the one the NS issued for this key"
            )
        if cert.not_valid_after_utc.timestamp() <= time.time():
            log.warning(
                "%s expired on %s: presenting none until the NS issues a new one",
                self.cert_file,
                cert.not_valid_after_utc.isoformat(),
            )

    def needs_certificate(self) -> bool:
        if self.insecure:
            return False
        cert = self.certificate()
        return cert is None or pki.needs_renewal(cert)

    def store_certificate(self, chain: str, bundle: str = "") -> None:
        if self.insecure or not chain:
            return
        self.store_bundle(bundle)
        pki.load_certificates(chain.encode())
        write_private(self.cert_file, chain.encode())
        if self._context is not None:
            self._context.load_cert_chain(str(self.cert_file), str(self.key_file))
        log.info("new certificate stored (serial %s)", self.serial())

    def context(self) -> ssl.SSLContext | None:
        """The client context for every HTTPS call this node makes (None over plain HTTP).

        One object for the node's life: a new certificate or bundle is loaded into it,
        and applies to connections made after that (callers reopen their clients)."""
        if self.insecure:
            return None
        if self._context is None:
            # An expired certificate would fail every handshake, the one that would bring
            # its renewal too: present none then (a task server's heartbeat needs none).
            cert = self.certificate()
            expired = cert is not None and cert.not_valid_after_utc.timestamp() <= time.time()
            present = None if expired else self.cert_file
            self._context = pki.client_context(self.ca_file, present, self.key_file)
        return self._context

    # --- revocations --------------------------------------------------------------------

    def store_crl(self, pem: str, number: int) -> None:
        """A CRL from the NS, checked against the CA before its serials count."""
        try:
            crl = x509.load_pem_x509_crl(pem.encode())
        except ValueError as exc:
            raise InvalidInput(f"the revocation list is not a PEM CRL: {exc}") from exc
        issuers = pki.load_certificates(self.ca_file.read_bytes())
        if not any(
            c.subject == crl.issuer and crl.is_signature_valid(c.public_key())  # type: ignore[arg-type]
            for c in issuers
        ):
            raise InvalidInput("the revocation list is not signed by the NS's CA")
        self.revoked = frozenset(r.serial_number for r in crl)
        self.crl_number = number
        write_private(self.dir / CRL_FILE, pem.encode())


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
