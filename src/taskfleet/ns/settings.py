"""Settings of one notification server process."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class NSSettings:
    db_url: str
    bind: str
    data_dir: Path
    # The URL agents and task servers use to reach this NS (its own agent role included).
    public_url: str = ""
    max_body_bytes: int = 1024 * 1024
    # An instance handed out but not confirmed by the agent is offered again after this.
    redeliver_after_s: float = 120.0
    # How long a task server's events long-poll may be held open.
    events_wait_s: float = 25.0
    # Requests per second one task server core answers: the R7 advice's capacity figure.
    # The default is the rate bench/poll.py measured (docs/benchmarks.md).
    ts_capacity_rps: float = 9000.0
    # Plain HTTP instead of TLS: a test mode that the NS warns about at every start.
    insecure_http: bool = False
    # How long node certificates are valid; nodes renew once two thirds have passed.
    node_cert_days: float = 90.0
    # History kept (ns.retention): runs with their instances and status records, and
    # audit entries, older than these are pruned in the background; 0 keeps them forever.
    keep_history_s: float = 90 * 86400.0
    keep_audit_s: float = 365 * 86400.0
    # The most script output stored per instance, in characters (protocol.fields).
    max_output_bytes: int = 4 * 1024 * 1024
    # An instance received by an agent ends TimedOut this long after its task's timeout,
    # and a cancel the agent never confirmed ends Canceled this long after it was asked
    # (ns.expiry): room for buffered status to arrive. How often the duty looks.
    deadline_grace_s: float = 300.0
    expiry_every_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.public_url:
            host, _, port = self.bind.rpartition(":")
            if host in ("0.0.0.0", "::", "[::]", ""):
                host = "127.0.0.1"
            scheme = "http" if self.insecure_http else "https"
            self.public_url = f"{scheme}://{host}:{port}"
