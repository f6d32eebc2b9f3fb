"""Stopping instances on this computer: cancels from the NS, and the scripts' records.

State: ``_running`` maps an instance to the script process running for it now
(``process_tree.Process``, also on disk beside the ledger: ``agent.interrupted``);
``_canceled`` holds the instances the NS asked to stop. A cancel kills the whole
process tree of the script at once; the instance then reports ``Canceled``
(``outcome_of``). A cancel for an instance not started yet marks it so it never
starts; one for an instance this agent never had is recorded in the ledger, so a
late hand-out of it is refused too (never run, R8).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from taskfleet.agent import interrupted, process_tree
from taskfleet.protocol.messages import InstanceState

log = logging.getLogger("taskfleet.agent")
REASON = "canceled"


class Stopper:
    def __init__(self, directory: Path) -> None:
        self.directory = directory  # the ledger's
        self._running: dict[int, process_tree.Process] = {}
        self._canceled: set[int] = set()

    def started(self, instance_id: int) -> Callable[[int], None]:
        """What the runner calls with the script's pid the moment it started."""

        def record(pid: int) -> None:
            process = process_tree.identify(pid)
            self._running[instance_id] = process
            try:
                interrupted.remember(self.directory, instance_id, process)
            except OSError as exc:  # a full disk: it runs and is watched, unrecorded
                log.error("instance %s: could not record its script: %s", instance_id, exc)
            if instance_id in self._canceled:  # canceled while it was being started
                process_tree.kill(process, own_child=True)

        return record

    def ended(self, instance_id: int) -> None:
        """The script ended (or was killed and reaped)."""
        self._running.pop(instance_id, None)
        interrupted.forget(self.directory, instance_id)

    def cancel(self, instance_id: int) -> int:
        """Stop the instance: kill its script's process tree if it runs; how many
        processes were killed."""
        self._canceled.add(instance_id)
        process = self._running.get(instance_id)
        if process is None:
            return 0
        killed = process_tree.kill(process, own_child=True)
        log.info("instance %s canceled: %d processes stopped", instance_id, killed)
        return killed

    def canceled(self, instance_id: int) -> bool:
        return instance_id in self._canceled

    def done(self, instance_id: int) -> None:
        """The instance was reported: forget it."""
        self._canceled.discard(instance_id)
        self.ended(instance_id)

    def outcome_of(
        self, instance_id: int, state: str, output: str | None
    ) -> tuple[str, str | None, str | None]:
        """A final state as reported: a canceled instance that did not succeed first
        ends ``Canceled``; (state, output, reason)."""
        if instance_id not in self._canceled or state == InstanceState.SUCCEEDED:
            return state, output, None
        note = "taskfleet: canceled; the script and its child processes were stopped"
        return InstanceState.CANCELED.value, f"{output or ''}\n[{note}]".lstrip("\n"), REASON
