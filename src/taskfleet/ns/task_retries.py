"""A task's retries and back-off (agent.retries does them; docs/work-model.md, "Retries").

Checked where a task is saved: ``retries`` 0..10, ``retry_backoff_s`` 0..86,400 and
finite; a bad value is a 400 naming the field, and the task is not saved."""

from __future__ import annotations

import math

from taskfleet.errors import InvalidInput
from taskfleet.storage.models import Task

MAX_RETRIES = 10  # as agent.retries.MAX_RETRIES
MAX_BACKOFF_S = 86400.0


def apply(task: Task, retries: int, retry_backoff_s: float) -> None:
    if not 0 <= retries <= MAX_RETRIES:
        raise InvalidInput(f"retries: give 0 to {MAX_RETRIES}", field="retries")
    if not math.isfinite(retry_backoff_s) or not 0 <= retry_backoff_s <= MAX_BACKOFF_S:
        raise InvalidInput(
            "retry_backoff_s: give seconds from 0 to 86400 (the first wait; each next one "
            "doubles, all inside the task's timeout)",
            field="retry_backoff_s",
        )
    task.retries, task.retry_backoff_s = retries, retry_backoff_s
