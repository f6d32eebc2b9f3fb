"""The CA's public face: its bundle, its revocation list, and certificates for agents.

``/api/ca`` and ``/api/ca/crl`` are open: a node fetches the bundle before it
trusts anything and checks it against the fingerprint it was given at install,
and a CRL is signed. Task servers get their certificates through approval and
the heartbeat (``ns.api_taskserver``), agents at enrolment and here.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from taskfleet.errors import InvalidInput
from taskfleet.ns import certificates
from taskfleet.ns import tls as ns_tls
from taskfleet.ns.auth import Administrator, agent_credential
from taskfleet.ns.openapi import errors
from taskfleet.ns.state import NSState, ns_state
from taskfleet.protocol import pki
from taskfleet.protocol.messages import (
    CABundle,
    CertificateRequest,
    IssuedCertificate,
    RevocationList,
)
from taskfleet.server.peers import peer_of

router = APIRouter(prefix="/api", tags=["certificates"])


def bundle_of(state: NSState) -> CABundle:
    authority = certificates.authority_of(state)
    pem = authority.bundle_pem
    return CABundle(
        bundle=pem.decode(), fingerprint=authority.fingerprint, bundle_id=pki.sha256_hex(pem)
    )


def _tls_only(state: NSState) -> None:
    if state.authority is None:
        raise InvalidInput("this NS runs with --insecure-http: it has no CA and issues nothing")


@router.get("/ca", response_model=CABundle)
async def ca_bundle(request: Request) -> CABundle:
    state = ns_state(request)
    _tls_only(state)
    return bundle_of(state)


@router.get("/ca/crl", response_model=RevocationList)
async def revocation_list(request: Request) -> RevocationList:
    state = ns_state(request)
    _tls_only(state)
    async with state.session() as session:
        crl, number = await certificates.crl_pem(state, session)
    return RevocationList(crl=crl, number=number)


@router.post("/ca/rotate", response_model=CABundle)
async def rotate(request: Request, admin: Administrator) -> CABundle:
    """A new CA: the old ones stay in the bundle and sign it (cross-certificate), so every
    node keeps verifying; the NS serves a certificate of the new CA from now on."""
    state = ns_state(request)
    _tls_only(state)
    authority = await certificates.rotate(state, admin.name)
    context = request.app.state.tls
    if context is not None:
        ns_tls.reload(context, authority, state.settings)
    return bundle_of(state)


@router.post(
    "/agent/certificate",
    response_model=IssuedCertificate,
    tags=["agent"],
    responses=errors(401, 403),
)
async def agent_certificate(request: Request, body: CertificateRequest) -> IssuedCertificate:
    """A new certificate for an enrolled agent: to renew, or for one enrolled before
    the NS had a CA. The key must be the one its certificate names, unless the agent
    calls with its current certificate (a new key) or never had one."""
    state = ns_state(request)
    _tls_only(state)
    credential = await agent_credential(request, certificate=False)
    issued = await certificates.for_agent(
        state, credential.principal, credential.secret, peer_of(request.scope), body.csr
    )
    return IssuedCertificate(certificate=issued.pem, ca_bundle=bundle_of(state).bundle)
