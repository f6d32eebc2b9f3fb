"""The NS's CA on its own: what it signs, what it refuses, what a node pins."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from taskfleet.errors import InvalidInput
from taskfleet.ns.authority import Authority, read_csr
from taskfleet.protocol import pki


def _csr(key: ec.EllipticCurvePrivateKey, cn: str = "agent:0") -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    request = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return request.public_bytes(serialization.Encoding.PEM).decode()


def test_the_ca_sets_the_subject_itself_and_refuses_weak_or_broken_requests(
    tmp_path: Path,
) -> None:
    # Given a CA, made on first start, its key readable by its user only
    authority, created = Authority.load_or_create(tmp_path / "ca")
    assert created and (tmp_path / "ca" / "ca.key").stat().st_mode & 0o777 == 0o600
    # When a node asks for a certificate naming someone else
    csr = read_csr(_csr(pki.new_key(), cn="admin:1"))
    issued = authority.issue(csr, "agent", 42)
    # Then the certificate names the node the NS chose
    cert = x509.load_pem_x509_certificates(issued.pem.encode())[0]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "agent:42"
    # When a request is on a weak curve, garbage, or signed by another key: 400 on csr
    for bad in (
        _csr(ec.generate_private_key(ec.SECP192R1())),
        "-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n-----END CERTIFICATE REQUEST-----\n",
        "",
    ):
        with pytest.raises(InvalidInput) as refused:
            read_csr(bad)
        assert refused.value.field == "csr"


def test_a_node_pins_only_the_ca_it_was_told_of(tmp_path: Path) -> None:
    # Given the real CA and an attacker's, served together on the node's first contact
    real, _ = Authority.load_or_create(tmp_path / "real")
    rogue, _ = Authority.load_or_create(tmp_path / "rogue")
    served = rogue.bundle_pem + real.bundle_pem
    # When the node checks it against the fingerprint it was given
    pinned = pki.check_bundle(served, real.fingerprint)
    # Then it keeps the real CA only
    assert [pki.fingerprint(c) for c in pinned] == [real.fingerprint]
    # and a bundle without it is refused
    with pytest.raises(InvalidInput):
        pki.check_bundle(rogue.bundle_pem, real.fingerprint)
