"""Admin API for job definitions (``/api/jobs``): create, edit, list, show."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Request

from taskfleet.ns import jobs
from taskfleet.ns.auth import Administrator, Viewer
from taskfleet.ns.openapi import errors
from taskfleet.ns.state import ns_state
from taskfleet.protocol.fields import Finite, Name, ShortText, bounded_list
from taskfleet.protocol.jobs import MAX_STEPS
from taskfleet.storage.models import Job

router = APIRouter(prefix="/api", tags=["jobs"])


@dataclass
class StepBody:
    """One step: exactly one of ``task`` or ``job`` (a name or an id), and its conditions.

    An action is ``continue``, ``stop-succeeded``, ``stop-failed`` or ``goto:K`` (a step
    number, from 1); ``on_code`` maps return codes to actions and wins over the others.
    """

    task: Name | None = None
    job: Name | None = None
    on_success: ShortText = "continue"
    on_failure: ShortText = "stop-failed"
    on_code: Annotated[dict[ShortText, ShortText], bounded_list(64)] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        ref = {k: v for k, v in (("task", self.task), ("job", self.job)) if v is not None}
        return {
            **ref,
            "on_success": self.on_success,
            "on_failure": self.on_failure,
            "on_code": self.on_code,
        }


@dataclass
class JobRequest:
    name: Name
    steps: Annotated[list[StepBody], bounded_list(MAX_STEPS)]
    kind: ShortText = "client"  # client | server
    timeout_s: Finite = 3600.0


@dataclass
class StepView:
    number: int
    kind: str  # task | job
    name: str
    on_success: str
    on_failure: str
    on_code: dict[str, str]


@dataclass
class JobView:
    id: int
    name: str
    kind: str
    timeout_s: float
    steps: list[StepView]
    created_at: float
    created_by: str


async def _view(session: Any, job: Job) -> JobView:
    steps = [StepView(**vars(v)) for v in await jobs.step_views(session, job)]
    return JobView(job.id, job.name, job.kind, job.timeout_s, steps, job.created_at, job.created_by)


@router.post("/jobs", status_code=201, responses=errors(409))
async def create_job(request: Request, body: JobRequest, admin: Administrator) -> JobView:
    """Save a job; its steps are checked whole (unknown tasks, goto past the end, cycles)."""
    async with ns_state(request).sessions() as session, session.begin():
        job = await jobs.create(
            session,
            body.name,
            body.kind,
            [s.as_dict() for s in body.steps],
            body.timeout_s,
            admin.name,
        )
        return await _view(session, job)


@router.put("/jobs/{key:path}", responses=errors(404, 409))
async def edit_job(request: Request, key: str, body: JobRequest, admin: Administrator) -> JobView:
    """Replace a job's name, kind, steps and timeout; runs already started keep theirs."""
    async with ns_state(request).sessions() as session, session.begin():
        job = await jobs.find(session, key)
        await jobs.update(
            session,
            job,
            body.name,
            body.kind,
            [s.as_dict() for s in body.steps],
            body.timeout_s,
            admin.name,
        )
        return await _view(session, job)


@router.get("/jobs")
async def list_jobs(request: Request, _: Viewer) -> list[JobView]:
    async with ns_state(request).sessions() as session:
        found = await jobs.listed(session)
        return [await _view(session, job) for job in found]


@router.get("/jobs/{key:path}", responses=errors(404))
async def show_job(request: Request, key: str, _: Viewer) -> JobView:
    async with ns_state(request).sessions() as session:
        return await _view(session, await jobs.find(session, key))
