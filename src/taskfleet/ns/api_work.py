"""Admin API for the work: policy and agent-configuration documents (R9), tasks and runs."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import Field
from sqlalchemy import select

from taskfleet.errors import InvalidInput
from taskfleet.ns import advice, api_scripts, drafts, runs, task_retries, tasks
from taskfleet.ns.api_schedules import RequirementsBody
from taskfleet.ns.api_scripts import RunParams, ScriptOptions, script_params
from taskfleet.ns.auth import Administrator, Operator, Viewer
from taskfleet.ns.openapi import errors
from taskfleet.ns.state import ns_state
from taskfleet.ns.work_replies import (
    AdviceView,
    AppliedDocument,
    AppliedNow,
    DocumentContent,
    DocumentView,
    RunProgress,
    TaskView,
    advice_view,
    applied,
    content,
    task_view,
)
from taskfleet.protocol.fields import Finite, Int32, Name, ShortText, bounded_list, text
from taskfleet.protocol.messages import INTERPRETERS, TaskType
from taskfleet.storage.models import AppliedVersion, Draft

router = APIRouter(prefix="/api", tags=["work"])
Kind = Annotated[str, Path(pattern="^(policy|agent-config)$", description="policy or agent-config")]
MAX_ENTRIES = 10_000  # of a document
MAX_TARGETS = 10_000  # of a run
MAX_SCRIPT_CHARS = tasks.MAX_SCRIPT_BYTES  # a character is at least a byte


@dataclass
class Document:
    # Each entry is checked by ns.drafts, which names the entry and field at fault.
    entries: Annotated[list[dict[str, Any]], bounded_list(MAX_ENTRIES)]


@dataclass
class EntryRequest:
    entry: dict[str, Any]
    position: Int32 | None = None  # counts from 1; at the end when left out


@dataclass
class EntryKey:
    collection: Name  # whose entry


Direction = Literal["up", "down"]


@dataclass
class EntryMove:
    collection: Name  # whose entry moves: in policy order, or in priority
    direction: Direction  # up: earlier (higher priority)


@dataclass
class ListedServer:
    collection: Name  # whose list in the draft policy
    task_server: Name


@dataclass
class ServerMove(ListedServer):
    direction: Direction  # up: chosen before the one above it now


@dataclass
class ServerOrder:
    collection: Name  # whose list in the draft policy
    task_servers: Annotated[list[Name], bounded_list(MAX_ENTRIES)]  # the same, in a new order


@router.get("/documents/{kind}")
async def show_document(request: Request, kind: Kind, _: Viewer) -> DocumentView:
    async with ns_state(request).session() as session:
        latest = await drafts.latest(session, kind)
        draft = await session.get(Draft, kind)
        return DocumentView(
            kind,
            None if latest is None else applied(latest),
            content(kind, await drafts.draft_document(session, kind)),
            await drafts.unapplied(session, kind),
            draft.updated_by if draft else None,
        )


@router.put("/documents/{kind}/draft")
async def put_draft(
    request: Request, kind: Kind, body: Document, admin: Administrator
) -> DocumentContent:
    async with ns_state(request).session() as session:
        return content(kind, await drafts.save_draft(session, kind, asdict(body), admin.name))


@router.post("/documents/{kind}/draft/entries", responses=errors(409))
async def set_entry(
    request: Request, kind: Kind, body: EntryRequest, admin: Administrator
) -> DocumentContent:
    if body.position is not None and body.position < 1:
        raise InvalidInput("position counts from 1", field="position")
    async with ns_state(request).session() as session:
        saved = await drafts.set_entry(session, kind, body.entry, body.position, admin.name)
        return content(kind, saved)


@router.post("/documents/{kind}/draft/entries/remove")
async def remove_entry(
    request: Request, kind: Kind, body: EntryKey, admin: Administrator
) -> DocumentContent:
    async with ns_state(request).session() as session:
        await drafts.remove_entry(session, kind, body.collection, admin.name)
        return content(kind, await drafts.draft_document(session, kind))


@router.post("/documents/{kind}/draft/entries/move", responses=errors(409))
async def move_entry(
    request: Request, kind: Kind, body: EntryMove, admin: Administrator
) -> DocumentContent:
    async with ns_state(request).session() as session:
        saved = await drafts.move_entry(session, kind, body.collection, body.direction, admin.name)
        return content(kind, saved)


# The Task Servers policy's editing steps, as the console offers them (ns.drafts).
@router.post("/documents/policy/draft/task-servers", responses=errors(404, 409))
async def add_task_server(
    request: Request, body: ListedServer, admin: Administrator
) -> DocumentContent:
    """Put a task server last on a collection's list (a new list if it has none)."""
    async with ns_state(request).session() as session:
        saved = await drafts.add_task_server(session, body.collection, body.task_server, admin.name)
        return content(drafts.POLICY, saved)


@router.post("/documents/policy/draft/task-servers/move", responses=errors(409))
async def move_task_server(
    request: Request, body: ServerMove, admin: Administrator
) -> DocumentContent:
    """Move a task server one place up or down on its collection's list."""
    async with ns_state(request).session() as session:
        saved = await drafts.move_task_server(
            session, body.collection, body.task_server, body.direction, admin.name
        )
        return content(drafts.POLICY, saved)


@router.post("/documents/policy/draft/task-servers/order", responses=errors(409))
async def order_task_servers(
    request: Request, body: ServerOrder, admin: Administrator
) -> DocumentContent:
    """A collection's whole list in a new order: the same task servers."""
    async with ns_state(request).session() as session:
        saved = await drafts.order_task_servers(
            session, body.collection, body.task_servers, admin.name
        )
        return content(drafts.POLICY, saved)


@router.post("/documents/policy/draft/task-servers/remove", responses=errors(409))
async def remove_task_server(
    request: Request, body: ListedServer, admin: Administrator
) -> DocumentContent:
    """Take a task server off a collection's list; a list left empty goes."""
    async with ns_state(request).session() as session:
        saved = await drafts.remove_task_server(
            session, body.collection, body.task_server, admin.name
        )
        return content(drafts.POLICY, saved)


@router.post("/documents/{kind}/apply")
async def apply(request: Request, kind: Kind, admin: Administrator) -> AppliedNow:
    state = ns_state(request)
    async with state.session() as session:
        version = await drafts.apply(session, kind, admin.name)
        made = AppliedNow(kind, version.version, content(kind, version.document))
    return made  # drafts.apply moved the agents epoch once this committed


@router.get("/advice")
async def scale_advice(request: Request, _: Viewer, draft: bool = False) -> list[AdviceView]:
    """R7: interval advice per configuration entry and per task server."""
    state = ns_state(request)
    async with state.session() as session:
        found = await advice.fleet_advice(session, state.settings.ts_capacity_rps, draft)
    return [advice_view(a) for a in found]


@router.get("/documents/{kind}/versions")
async def versions(request: Request, kind: Kind, _: Viewer) -> list[AppliedDocument]:
    async with ns_state(request).session() as session:
        rows = await session.scalars(
            select(AppliedVersion)
            .where(AppliedVersion.kind == kind)
            .order_by(AppliedVersion.version)
        )
        return [applied(v) for v in rows.all()]


# --- tasks ------------------------------------------------------------------------


@dataclass
class TaskRequest(ScriptOptions):
    name: Name
    script: Annotated[str, text(MAX_SCRIPT_CHARS)]
    # Enums in the document; ns.tasks checks them and says which there are.
    interpreter: Annotated[ShortText, Field(json_schema_extra={"enum": list(INTERPRETERS)})] = "sh"
    timeout_s: Finite = 600.0
    type: Annotated[ShortText, Field(json_schema_extra={"enum": list(TaskType)})] = (
        TaskType.RUN_SCRIPT
    )
    # A failed script runs again up to ``retries`` times, after retry_backoff_s, twice
    # that, ..., all inside timeout_s (ns.task_retries, agent.retries).
    retries: Int32 = 0
    retry_backoff_s: Finite = 10.0


@router.post("/tasks", status_code=201, responses=errors(409))
async def create_task(request: Request, body: TaskRequest, admin: Administrator) -> TaskView:
    state = ns_state(request)
    async with state.session() as session:
        task = await tasks.create(
            session,
            body.name,
            body.type,
            script_params(body),
            body.timeout_s,
            admin.name,
            box=state.secrets,
        )
        task_retries.apply(task, body.retries, body.retry_backoff_s)
        return task_view(task)


@router.put("/tasks/{key:path}", responses=errors(404, 409))
async def edit_task(
    request: Request, key: str, body: TaskRequest, admin: Administrator
) -> TaskView:
    """Edit a run-script task: its name, script, options and declared parameters."""
    state = ns_state(request)
    async with state.session() as session:
        task = await tasks.find(session, key)
        await tasks.update(
            session,
            task,
            body.name,
            script_params(body),
            body.timeout_s,
            admin.name,
            box=state.secrets,
        )
        task_retries.apply(task, body.retries, body.retry_backoff_s)
        return task_view(task)


@router.get("/tasks")
async def list_tasks(request: Request, _: Viewer) -> list[TaskView]:
    async with ns_state(request).session() as session:
        return [task_view(t) for t in await tasks.listed(session)]


@router.get("/tasks/{key:path}")
async def show_task(request: Request, key: str, _: Viewer) -> TaskView:
    async with ns_state(request).session() as session:
        return task_view(await tasks.find(session, key))


# --- runs -------------------------------------------------------------------------


@dataclass
class RunRequest:
    task: Name  # its name or id
    # Names or ids of computers and collections.
    targets: Annotated[list[Name], bounded_list(MAX_TARGETS)] = field(default_factory=list)
    # How its computers report (SPEC R5): "live", status at once (the default: what an
    # admin running something now expects), or "buffered", every Send Status Interval
    # (gentler on the servers for large fleets). ``live`` is the older spelling.
    report: Annotated[ShortText | None, Field(json_schema_extra={"enum": ["live", "buffered"]})] = (
        None
    )
    live: bool | None = None
    # Values of the task's declared parameters (ns.parameters), by name.
    params: RunParams = field(default_factory=dict)
    # Computers and collections left out (ns.targets); deliver outside maintenance
    # windows too (ns.windows); when the run is complete (ns.completion).
    exclude: Annotated[list[Name], bounded_list(MAX_TARGETS)] = field(default_factory=list)
    ignore_windows: bool = False
    requirements: RequirementsBody = field(default_factory=RequirementsBody)
    # When instances no agent received end Expired (ns.expiry): seconds from now, or a
    # moment (UNIX seconds); one of them, in the future. Default: 7 days from now.
    expires_in_s: Finite | None = None
    expires_at: Finite | None = None

    def is_live(self) -> bool:
        if self.report is not None and self.report not in runs.REPORTS:
            raise InvalidInput("report is 'live' or 'buffered'", field="report")
        if self.report is not None and self.live is not None:
            if self.live != (self.report == runs.LIVE):
                raise InvalidInput(
                    f"report {self.report!r} contradicts live {self.live}; give one", field="report"
                )
        if self.report is not None:
            return self.report == runs.LIVE
        return True if self.live is None else self.live


@router.post("/runs", status_code=201, responses=errors(404, 409))
async def start_run(request: Request, body: RunRequest, operator: Operator) -> runs.RunSummary:
    state = ns_state(request)
    async with state.session() as session:
        run = await runs.start_run(
            state,
            session,
            body.task,
            body.targets,
            body.is_live(),
            operator.name,
            params=api_scripts.as_text(body.params),
            exclude=body.exclude,
            ignore_windows=body.ignore_windows,
            requirements=body.requirements.as_dict(),
            expires_in_s=body.expires_in_s,
            expires_at=body.expires_at,
        )
    async with state.session() as session:
        return await runs.summary(session, run.id, with_instances=False)


# GET /api/runs (the run list, with its filters) and a computer's output: ns.api_history.


@router.get("/runs/{run_id}")
async def run_status(
    request: Request, run_id: int, _: Viewer, instances: bool = True
) -> runs.RunSummary:
    async with ns_state(request).session() as session:
        return await runs.summary(session, run_id, with_instances=instances)


# Re-read at least this often while waiting: the bound on the delay when no wake-up
# comes (a change made on another replica, or by a path that does not call
# ``Hub.runs_changed``).
RUN_RECHECK_S = 0.5  # what the CLI polled at before it followed by long poll


def counts_version(summary: runs.RunSummary) -> str:
    """A fingerprint of a run's per-state counts: the same on every NS replica and across
    restarts, so a follower can pass it back as ``since`` to any of them."""
    text = json.dumps([sorted(summary.counts.items()), summary.done, summary.complete])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@router.get("/runs/{run_id}/wait")
async def wait_run(
    request: Request,
    run_id: int,
    _: Viewer,
    since: Annotated[str, Query(max_length=64, description="'version' of the last reply")] = "",
    timeout: Annotated[float, Query(ge=0, le=60, description="seconds to wait at most")] = 10.0,
) -> RunProgress:
    """Long poll: the run's counts (no instances) and their ``version`` as soon as the
    version differs from ``since`` or the run is done, else after ``timeout`` seconds.

    Woken when status for the run is ingested (``Hub.runs_changed``); without a
    wake-up the counts are read again every ``RUN_RECHECK_S``, so following a run
    never depends on one.
    """
    state = ns_state(request)
    deadline = asyncio.get_running_loop().time() + timeout
    with state.hub.watch_run(run_id) as changed:
        while True:
            if not state.hub.closed:
                changed.clear()
            async with state.session() as session:
                found = await runs.summary(session, run_id, with_instances=False)
            version = counts_version(found)
            left = deadline - asyncio.get_running_loop().time()
            if version != since or found.done or found.complete or left <= 0 or state.hub.closed:
                return RunProgress(**asdict(found), version=version)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, RUN_RECHECK_S)):
                    await changed.wait()
