"""Settings of one task server process."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TaskServerSettings:
    ns_url: str
    bind: str
    data_dir: Path
    token: str = ""
    url: str = ""  # how agents reach it; defaults to https://BIND
    ca_fingerprint: str = ""  # pins the NS's CA on first start (protocol.trust)
    insecure_http: bool = False
    name: str = ""
    addresses: list[str] = field(default_factory=list)  # override the detected ones
    client_limit: int = 5000
    heartbeat_period_s: float = 10.0
    # Status is relayed to the NS in batches at most this far apart (R8).
    status_batch_interval_s: float = 1.0
    max_body_bytes: int = 1024 * 1024
    # Notification channels the open-files limit allows (server.capacity); set at start.
    channel_capacity: int | None = None

    def __post_init__(self) -> None:
        if not self.url:
            self.url = f"{'http' if self.insecure_http else 'https'}://{self.bind}"
