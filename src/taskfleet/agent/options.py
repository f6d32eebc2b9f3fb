"""What the agent is started with (agent.cli reads them from its command line)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class AgentOptions:
    ns_url: str
    state_dir: Path
    token: str = ""
    name: str | None = None
    addresses: list[str] = field(default_factory=list)
    startup_window_s: float = 60.0  # R11
    channel_wait_s: float = 50.0
    ca_fingerprint: str = ""  # pins the NS's CA on first start (protocol.trust)
    insecure_http: bool = False
    facts_file: Path | None = None  # custom facts (agent.inventory); <state-dir>/facts.json
    power_test_file: Path | None = None  # power control records, never runs (agent.power)
