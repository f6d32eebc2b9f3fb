"""The admin CLI's connection to the NS API: where it is, who we are, and failing clearly."""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any, NoReturn

import httpx
import typer

from taskfleet.protocol.calls import error_of
from taskfleet.protocol.transport import Credential, parse_credential


class Context:
    """The global options, typed before or after the command (``cli.global_options``):
    ``--ns``, ``--credential``, ``--json``; the environment fills in the first two."""

    def __init__(
        self, ns: str | None = None, credential: str | None = None, as_json: bool = False
    ) -> None:
        self.given_ns = ns
        self.given_credential = credential
        self.as_json = as_json

    @property
    def ns(self) -> str:
        return (self.given_ns or os.environ.get("TASKFLEET_NS") or "").rstrip("/")

    @property
    def credential_source(self) -> str:
        return self.given_credential or os.environ.get("TASKFLEET_CREDENTIAL") or ""

    def credential(self) -> Credential:
        source = self.credential_source
        if not source:
            fail(
                "no admin credential: pass --credential FILE or set TASKFLEET_CREDENTIAL; the "
                "NS wrote admin.credential into its --data-dir on first start"
            )
        text = source
        path = Path(source).expanduser()
        if not source.startswith("tf1.") and path.exists():
            try:
                text = path.read_text().strip()
            except OSError as exc:
                fail(f"cannot read the credential file {path}: {exc.strerror}")
        credential = parse_credential(text)
        if credential is None:
            fail(f"{source} does not hold a taskfleet credential")
        return credential

    def api(self) -> Api:
        if not self.ns:
            fail("where is the NS? pass --ns URL or set TASKFLEET_NS (e.g. http://127.0.0.1:8400)")
        return Api(self.ns, self.credential(), self.ca_file())

    def ca_file(self) -> Path | None:
        """The CA bundle to verify the NS with: TASKFLEET_CA, else the one the NS keeps
        beside the admin credential it wrote (<data-dir>/ca/bundle.pem), else the
        system's trust store (an NS behind a publicly trusted proxy)."""
        named = os.environ.get("TASKFLEET_CA")
        if named:
            return Path(named).expanduser()
        source = self.credential_source
        if source and not source.startswith("tf1."):
            beside = Path(source).expanduser().parent / "ca" / "bundle.pem"
            if beside.exists():
                return beside
        return None


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"taskfleet: {message}", err=True)
    raise typer.Exit(code)


class Api:
    def __init__(self, base_url: str, credential: Credential, ca_file: Path | None = None) -> None:
        # Plain HTTP needs no TLS context: building one loads the CA bundle, a tenth of a
        # second or more of every command.
        verify: ssl.SSLContext | bool = base_url.startswith("https:")
        if verify and ca_file is not None:
            verify = ssl.create_default_context(cafile=str(ca_file))
        self.client = httpx.Client(
            base_url=base_url, headers=credential.header, timeout=30.0, verify=verify
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            fail(f"cannot reach the NS at {self.client.base_url}: {exc}")
        if response.status_code >= 400:
            fail(error_of(response).message)
        return response.json() if response.content else None

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, json=body)

    def put(self, path: str, body: Any = None) -> Any:
        return self.request("PUT", path, json=body)
