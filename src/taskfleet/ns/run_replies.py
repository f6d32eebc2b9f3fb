"""The rows of a run's reply (``runs.RunSummary``): its instances and a server job's
step runs, typed for the OpenAPI document.

TypedDicts, not models: ``runs.summary`` and ``server_jobs.step_runs`` build them as
dict literals, which mypy checks key by key against these. FastAPI drops keys a row
type lacks, so a key added to one of those literals must be added here as well.
"""

from __future__ import annotations

from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12


class InstanceRow(TypedDict):
    """One computer's instance of a run (``GET /api/runs/{id}``)."""

    instance_id: int
    computer_id: int
    computer: str
    state: str
    return_code: int | None
    output: str | None  # None until the agent sends some
    received_at: float | None
    started_at: float | None
    finished_at: float | None
    status_count: int
    reason: str | None  # why the NS or the agent ended it so


class StepRun(TypedDict):
    """One step's run of a server job's run (``ns.server_jobs``), in the order they
    started; a goto may repeat a step."""

    run: int  # its run id
    step: int  # from 1
    name: str
    ended_by: str | None
    ended_at: float | None
