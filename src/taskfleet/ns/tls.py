"""The NS's TLS: its CA (``ns.authority``), its server certificate, the server context.

Clients may connect without a certificate (browsers for the console, the CLI,
agents that come to enrol); routes for nodes then demand the one the CA issued
them (``server.peers``). A certificate from any other CA fails the handshake.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

from taskfleet.ns.authority import Authority
from taskfleet.ns.settings import NSSettings
from taskfleet.protocol import pki

WILDCARD_HOSTS = ("0.0.0.0", "::", "[::]", "")


def hosts_of(settings: NSSettings) -> list[str]:
    """The names the NS's certificate must carry: its bind address and public URL's host."""
    hosts = set()
    bind_host = settings.bind.rpartition(":")[0].strip("[]")
    if bind_host not in WILDCARD_HOSTS:
        hosts.add(bind_host)
    public = urlsplit(settings.public_url).hostname
    if public:
        hosts.add(public)
    return sorted(hosts)


def load(settings: NSSettings) -> tuple[Authority, bool]:
    return Authority.load_or_create(settings.data_dir / "ca")


def server_context(authority: Authority, settings: NSSettings) -> ssl.SSLContext:
    cert_file, key_file = authority.server_files(hosts_of(settings))
    return pki.server_context(cert_file, key_file, authority.dir / "bundle.pem", ssl.CERT_OPTIONAL)


def reload(context: ssl.SSLContext, authority: Authority, settings: NSSettings) -> None:
    """After a rotation: the new server certificate and bundle, for new connections."""
    cert_file, key_file = authority.server_files(hosts_of(settings))
    context.load_cert_chain(str(cert_file), str(key_file))
    context.load_verify_locations(cafile=str(authority.dir / "bundle.pem"))
