"""``taskfleet ca show|rotate``: the NS's certificate authority."""

from __future__ import annotations

import datetime

import typer
from cryptography import x509

from taskfleet.cli.client import Api, Context
from taskfleet.cli.output import emit_json, table
from taskfleet.protocol import pki

ca = typer.Typer(help="The NS's certificate authority (TLS for every node).")


def _api(ctx: typer.Context) -> Api:
    obj: Context = ctx.obj
    return obj.api()


def _show(ctx: typer.Context, data: dict[str, str]) -> None:
    obj: Context = ctx.obj
    if obj.as_json:
        emit_json(data)
        return
    # Whole, on one line: it is copied into installers (--ca-fingerprint).
    typer.echo(f"CA fingerprint (give nodes --ca-fingerprint): {data['fingerprint']}")
    rows = []
    for cert in x509.load_pem_x509_certificates(data["bundle"].encode()):
        rows.append(
            [
                cert.subject.rfc4514_string(),
                pki.fingerprint(cert),
                f"{cert.not_valid_after_utc:%Y-%m-%d}",
                "current" if pki.fingerprint(cert) == data["fingerprint"] else "trusted (older)",
            ]
        )
    table("CA bundle nodes trust", ["subject", "fingerprint", "valid until", "role"], rows)


@ca.command("show")
def show(ctx: typer.Context) -> None:
    """The CA's fingerprint (give it to nodes at install) and the bundle nodes trust."""
    _show(ctx, _api(ctx).get("/api/ca"))


@ca.command("rotate")
def rotate(ctx: typer.Context) -> None:
    """Make a new CA. The old one stays trusted, and signs the new one, so nodes keep
    working; they move to certificates of the new CA as they renew."""
    data = _api(ctx).post("/api/ca/rotate")
    typer.echo(f"rotated at {datetime.datetime.now():%Y-%m-%d %H:%M}; new CA:")
    _show(ctx, data)
