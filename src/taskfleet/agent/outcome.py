"""How a task ended on this computer: the state, return code and output the agent
reports for its instance. Every kind of task ends in one: a script (agent.scripts,
each attempt and the last of its retries), copy file, power control, inventory, and a
client job, whose outcome also carries its steps' records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from taskfleet.protocol.messages import InstanceState


@dataclass
class Outcome:
    state: InstanceState
    return_code: int | None
    output: str
    # A client job's step records (protocol.step_records), reported with its final status.
    steps: list[dict[str, Any]] | None = None


def succeeded(message: str) -> Outcome:
    return Outcome(InstanceState.SUCCEEDED, 0, f"taskfleet: {message}")


def failed(message: str, return_code: int | None = None) -> Outcome:
    return Outcome(InstanceState.FAILED, return_code, f"taskfleet: {message}")
