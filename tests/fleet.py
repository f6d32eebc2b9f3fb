"""A real taskfleet for tests: NS, task servers and agents as separate processes on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509

from taskfleet.cli.launcher import Launcher, Proc, wait_http, wait_until
from taskfleet.errors import TaskfleetError
from taskfleet.protocol import pki
from taskfleet.protocol.calls import error_of
from taskfleet.protocol.transport import parse_credential
from tests.ports import free_port


class ApiError(Exception):
    """An error reply: its status and JSON body for assertions, and ``error``, what it
    decodes to in the error tree (the protocol's decoding, as the CLI and nodes see it)."""

    def __init__(self, status: int, body: Any, error: TaskfleetError | None = None) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body
        self.error = error


@dataclass
class Api:
    """Admin calls to the NS that raise ApiError instead of exiting like the CLI."""

    client: httpx.Client

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.client.request(method, path, **kwargs)
        if response.status_code >= 400:
            error = error_of(response)
            try:
                body = response.json()
            except ValueError:
                body = error.message  # not JSON (a proxy's page): what the decoder kept
            raise ApiError(response.status_code, body, error)
        return response.json() if response.content else None

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, body: Any = None) -> Any:
        return self.call("POST", path, json=body)


@dataclass
class TaskServerProc:
    name: str
    port: int
    proc: Proc
    data_dir: Path

    scheme: str = "https"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"


@dataclass
class Replica:
    """Another NS process on the Fleet's database (PostgreSQL): the same fleet, its own API."""

    name: str
    port: int
    proc: Proc
    api: Api

    scheme: str = "https"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"


@dataclass
class Fleet:
    root: Path
    db_url: str
    launcher: Launcher = field(init=False)
    ns_port: int = 0
    ns: Proc | None = None
    api: Api = field(init=False)
    servers: dict[str, TaskServerProc] = field(default_factory=dict)
    agents: dict[str, Proc] = field(default_factory=dict)
    replicas: dict[str, Replica] = field(default_factory=dict)
    _ts_token: str = ""
    _agent_token: str = ""
    # Real TLS with the NS's own CA, as in production; False runs --insecure-http.
    tls: bool = True
    fingerprint: str = ""  # of the NS's CA, given to every node (--ca-fingerprint)
    _cert_env: str | None = None

    def __post_init__(self) -> None:
        self.launcher = Launcher(self.root / "logs")

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def ns_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.ns_port}"

    @property
    def ca_bundle(self) -> Path:
        return self.root / "ns" / "ca" / "bundle.pem"

    def csr(self, kind: pki.NodeKind = "agent") -> str:
        """A certificate request for a hand-made node ("" on plain HTTP)."""
        return pki.csr_pem(pki.new_key(), kind) if self.tls else ""

    def trust_args(self) -> list[str]:
        """How a node is told whom to trust: the CA's fingerprint, or plain HTTP."""
        return ["--ca-fingerprint", self.fingerprint] if self.tls else ["--insecure-http"]

    @property
    def credential_file(self) -> Path:
        return self.root / "ns" / "admin.credential"

    def start_ns(self, *ns_args: str) -> None:
        self.ns_port = self.ns_port or free_port()
        self.ns = self.launcher.start(
            "ns",
            "ns",
            "serve",
            "--db",
            self.db_url,
            "--bind",
            f"127.0.0.1:{self.ns_port}",
            "--data-dir",
            str(self.root / "ns"),
            *ns_args,
            *([] if self.tls else ["--insecure-http"]),
        )
        wait_http(f"{self.ns_url}/hello", self.ns, timeout=60)
        credential = parse_credential(self.credential_file.read_text())
        assert credential is not None
        verify: ssl.SSLContext | bool = False
        if self.tls:
            ca = x509.load_pem_x509_certificate((self.root / "ns" / "ca" / "ca.crt").read_bytes())
            self.fingerprint = pki.fingerprint(ca)
            verify = ssl.create_default_context(cafile=str(self.ca_bundle))
            # Plain httpx calls in tests, and CLI processes they start, trust this CA.
            if self._cert_env is None:
                self._cert_env = os.environ.get("SSL_CERT_FILE", "")
            os.environ["SSL_CERT_FILE"] = str(self.ca_bundle)
        self.api = Api(
            httpx.Client(base_url=self.ns_url, headers=credential.header, timeout=30, verify=verify)
        )

    def start_replica(self, name: str) -> Replica:
        """Start another NS on the same database, with its own port and data directory.

        It finds the database's admin already there, so it writes no credential of its
        own: the first NS's admin credential works on it."""
        port = free_port()
        if self.tls:  # replicas share one CA: its directory is copied to each
            shutil.copytree(self.root / "ns" / "ca", self.root / name / "ca", dirs_exist_ok=True)
        proc = self.launcher.start(
            name,
            "ns",
            "serve",
            "--db",
            self.db_url,
            "--bind",
            f"127.0.0.1:{port}",
            "--data-dir",
            str(self.root / name),
            *([] if self.tls else ["--insecure-http"]),
        )
        url = f"{self.scheme}://127.0.0.1:{port}"
        wait_http(f"{url}/hello", proc, timeout=60)
        api = Api(
            httpx.Client(
                base_url=url,
                headers=self.api.client.headers,
                timeout=30,
                verify=ssl.create_default_context(cafile=str(self.ca_bundle))
                if self.tls
                else False,
            )
        )
        replica = self.replicas[name] = Replica(name, port, proc, api, self.scheme)
        return replica

    def token(self, kind: str) -> str:
        token: str = self.api.post("/api/tokens", {"kind": kind})["token"]
        return token

    def start_ts(
        self,
        name: str,
        *extra: str,
        port: int = 0,
        approve: bool = True,
        prefix: Sequence[str] = (),
        ns_url: str = "",
    ) -> TaskServerProc:
        """Start (or restart) a task server; ``prefix`` wraps the command (e.g. prlimit);
        ``ns_url`` points it at a replica instead of the first NS."""
        if not self._ts_token:
            self._ts_token = self.token("taskserver")
        existing = self.servers.get(name)
        port = port or (existing.port if existing else free_port())
        data_dir = self.root / name
        proc = self.launcher.start(
            name,
            "taskserver",
            "serve",
            "--ns",
            ns_url or self.ns_url,
            "--bind",
            f"127.0.0.1:{port}",
            "--data-dir",
            str(data_dir),
            # Tokens never on a command line (ps shows it to every user): the environment
            # here, a file for agents.
            "--name",
            name,
            "--heartbeat",
            "2",
            *self.trust_args(),
            *extra,
            prefix=prefix,
            env={"TASKFLEET_TOKEN": self._ts_token},
        )
        wait_http(f"{self.scheme}://127.0.0.1:{port}/hello", proc)
        ts = self.servers[name] = TaskServerProc(name, port, proc, data_dir, self.scheme)
        if approve:
            self.api.post(f"/api/taskservers/{name}/approve")
            self.wait_available(name)
            if self.tls:  # and it has heard: it serves the certificate approval signed
                self.wait_serving(ts)
        return ts

    def wait_serving(self, ts: TaskServerProc, timeout: float = 20) -> None:
        ctx = ssl.create_default_context(cafile=str(self.ca_bundle))
        wait_until(
            lambda: httpx.get(f"{ts.url}/hello", verify=ctx, timeout=2).status_code == 200,
            timeout,
            f"{ts.name} serving its CA certificate",
        )

    def wait_available(self, name: str, available: bool = True, timeout: float = 20) -> None:
        def check() -> bool:
            rows = {r["name"]: r for r in self.api.get("/api/taskservers")}
            return name in rows and rows[name]["available"] is available

        wait_until(check, timeout, f"task server {name} available={available}")

    def start_agent(self, name: str, *extra: str, ns_url: str = "") -> Proc:
        token_file = self.root / "agent.token"
        if not self._agent_token:
            self._agent_token = self.token("agent")
            token_file.parent.mkdir(parents=True, exist_ok=True)
            token_file.write_text(self._agent_token + "\n")
            token_file.chmod(0o600)
        proc = self.launcher.start(
            name,
            "agent",
            "run",
            "--ns",
            ns_url or self.ns_url,
            "--state-dir",
            str(self.root / "agents" / name),
            "--token-file",
            str(token_file),
            "--name",
            name,
            "--startup-window",
            "0.5",
            "--channel-wait",
            "20",
            *self.trust_args(),
            *extra,
        )
        self.agents[name] = proc
        return proc

    def apply_policy(self, collection: str, pattern: str, task_servers: list[str]) -> None:
        """Create a collection by name pattern and apply a policy listing ``task_servers``."""
        self.api.post("/api/collections", {"name": collection, "rules": {"name_pattern": pattern}})
        self.api.post(
            "/api/documents/policy/draft/entries",
            {"entry": {"collection": collection, "task_servers": task_servers}},
        )
        self.api.post("/api/documents/policy/apply")

    def computer(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.api.get(f"/api/computers/{name}")
        return found

    def wait_assigned(self, names: list[str], timeout: float = 30) -> dict[str, dict[str, Any]]:
        def check() -> dict[str, dict[str, Any]] | None:
            rows = {}
            for name in names:
                row = self.computer(name)
                if not row["assign_step"]:
                    return None
                rows[name] = row
            return rows

        result = wait_until(check, timeout, f"agents {names} to be assigned")
        assert isinstance(result, dict)
        return result

    def create_task(
        self, name: str, script: str, interpreter: str = "sh", timeout_s: float = 60
    ) -> None:
        self.api.post(
            "/api/tasks",
            {"name": name, "script": script, "interpreter": interpreter, "timeout_s": timeout_s},
        )

    def run(self, task: str, targets: list[str], live: bool = True) -> int:
        run_id: int = self.api.post("/api/runs", {"task": task, "targets": targets, "live": live})[
            "id"
        ]
        return run_id

    def wait_run(
        self, run_id: int, timeout: float = 60, done: Callable[[dict[str, Any]], bool] | None = None
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            run: dict[str, Any] = self.api.get(f"/api/runs/{run_id}")
            finished = done(run) if done else run["done"]
            return run if finished else None

        try:
            result = wait_until(check, timeout, f"run {run_id}")
        except TimeoutError:
            raise TimeoutError(
                f"run {run_id} not done: {self.api.get(f'/api/runs/{run_id}')}\n{self.logs()}"
            ) from None
        assert isinstance(result, dict)
        return result

    def logs(self, tail: int = 1500) -> str:
        parts = []
        for path in sorted((self.root / "logs").glob("*.log")):
            parts.append(f"--- {path.name} ---\n{path.read_text(errors='replace')[-tail:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        self.launcher.stop_all()
        if hasattr(self, "api"):
            self.api.client.close()
        for replica in self.replicas.values():
            replica.api.client.close()
        if self._cert_env is not None:
            if self._cert_env:
                os.environ["SSL_CERT_FILE"] = self._cert_env
            else:
                os.environ.pop("SSL_CERT_FILE", None)


def elapsed(since: float) -> float:
    return time.monotonic() - since
