"""Jobs: list them with their steps, create and edit them (admin), run one (operator):
now from the list, or from the run form tasks have (``console.run_form``): targets,
exclusions, when, report, expiry, completion requirements and the job's parameters.

The form shows one row per step (what it runs, and its three conditions) plus a few
empty rows for new steps; an empty row is left out, so no script is needed to add
or remove steps. A mistake comes back with the message at its step and field
(``steps.N.on_failure``) and everything typed still there.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from taskfleet.console import run_form
from taskfleet.console.sessions import Changing, Viewing
from taskfleet.console.web import PREFIX, render
from taskfleet.errors import InvalidInput, TaskfleetError
from taskfleet.ns import collections, job_plans, jobs, runs, tasks
from taskfleet.ns.state import ns_state
from taskfleet.ns.users import Role

router = APIRouter(prefix=PREFIX + "/jobs", include_in_schema=False)
Text = Annotated[str, Form()]
Texts = Annotated[list[str], Form()]
SPARE_ROWS = 3
ACTIONS = ("continue", "stop-succeeded", "stop-failed")


def _codes_text(on_code: dict[str, str]) -> str:
    return ", ".join(f"{code}:{then}" for code, then in on_code.items())


def _codes(text: str, index: int) -> dict[str, str]:
    """``3010:continue, 1:goto:2`` as ``{"3010": "continue", "1": "goto:2"}``."""
    found = {}
    for part in (p.strip() for p in text.split(",")):
        code, sep, then = part.partition(":")
        if not part:
            continue
        if not sep:
            raise InvalidInput(
                f"step {index + 1}: write return codes as CODE:ACTION, e.g. 3010:continue",
                field=f"steps.{index}.on_code",
            )
        found[code.strip()] = then.strip()
    return found


def _steps_from_form(
    what: list[str], on_success: list[str], on_failure: list[str], on_code: list[str]
) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """(rows as typed, steps for ns.jobs): empty rows left out, the others in order."""
    rows: list[dict[str, str]] = []
    steps: list[dict[str, Any]] = []
    for i, ref in enumerate(what):
        row = {
            "what": ref,
            "on_success": on_success[i] if i < len(on_success) else "continue",
            "on_failure": on_failure[i] if i < len(on_failure) else "stop-failed",
            "on_code": on_code[i] if i < len(on_code) else "",
        }
        if not ref.strip():
            continue
        rows.append(row)
        kind, _, name = ref.partition(":")
        steps.append(
            {
                kind: name,
                "on_success": row["on_success"],
                "on_failure": row["on_failure"],
                "on_code": _codes(row["on_code"], len(steps)),
            }
        )
    return rows, steps


async def _choices(session: Any) -> list[tuple[str, str]]:
    """What a step may run, as (value, label): every task, then every job."""
    task_names = await tasks.names(session)
    job_names = await jobs.names(session)
    return [(f"task:{n}", f"task {n}") for n in task_names] + [
        (f"job:{n}", f"job {n}") for n in job_names
    ]


async def _editor(
    request: Request,
    form: dict[str, Any],
    job_id: int | None,
    error: TaskfleetError | None = None,
) -> HTMLResponse:
    async with ns_state(request).session() as session:
        choices = await _choices(session)
    rows = (
        list(form["rows"])
        + [{"what": "", "on_success": "continue", "on_failure": "stop-failed", "on_code": ""}]
        * SPARE_ROWS
    )
    field = error.field if error else None
    if field and field.startswith("steps.") and field.count(".") > 2:
        field = ".".join(field.split(".")[:3])  # steps.0.on_code.5: the row's codes field
    context = {
        "form": form,
        "rows": rows,
        "choices": choices,
        "actions": ACTIONS,
        "job_id": job_id,
        "field_errors": {field: error.message} if error and field else {},
        "error": error.message if error and not field else "",
    }
    status = error.status_code if error else 200
    return await render(request, "job_form.html", context, status_code=status, page="jobs")


@router.get("")
async def job_list(request: Request, user: Viewing) -> HTMLResponse:
    return await _list(request)


async def _list(request: Request, status_code: int = 200, **extra: Any) -> HTMLResponse:
    async with ns_state(request).session() as session:
        found = await jobs.listed(session)
        shown = [(job, await jobs.step_views(session, job)) for job in found]
        targets = await collections.names(session)
    context = {"jobs": shown, "collections": targets, **extra}
    return await render(request, "jobs.html", context, status_code=status_code, page="jobs")


@router.get("/new")
async def new_job(request: Request, user: Viewing) -> HTMLResponse:
    user.require(Role.ADMIN)
    return await _editor(
        request, {"name": "", "kind": "client", "timeout_s": "3600", "rows": []}, None
    )


@router.get("/{job_id}/edit")
async def edit_job(request: Request, job_id: int, user: Viewing) -> HTMLResponse:
    user.require(Role.ADMIN)
    async with ns_state(request).session() as session:
        job = await jobs.find(session, str(job_id))
        views = await jobs.step_views(session, job)
    rows = [
        {
            "what": f"{v.kind}:{v.name}",
            "on_success": v.on_success,
            "on_failure": v.on_failure,
            "on_code": _codes_text(v.on_code),
        }
        for v in views
    ]
    form = {"name": job.name, "kind": job.kind, "timeout_s": f"{job.timeout_s:g}", "rows": rows}
    return await _editor(request, form, job.id)


@router.post("/save")
async def save_job(
    request: Request,
    user: Changing,
    name: Text = "",
    kind: Text = "client",
    timeout_s: Text = "3600",
    job_id: Text = "",
    what: Texts = [],  # noqa: B006
    on_success: Texts = [],  # noqa: B006
    on_failure: Texts = [],  # noqa: B006
    on_code: Texts = [],  # noqa: B006
) -> Response:
    user.require(Role.ADMIN)
    form: dict[str, Any] = {"name": name, "kind": kind, "timeout_s": timeout_s, "rows": []}
    editing = int(job_id) if job_id.isdigit() else None
    try:
        form["rows"], steps = _steps_from_form(what, on_success, on_failure, on_code)
        try:
            timeout = float(timeout_s)
        except ValueError:
            raise InvalidInput(
                f"{timeout_s!r} is not a number of seconds", field="timeout_s"
            ) from None
        async with ns_state(request).session() as session:
            if editing is None:
                await jobs.create(session, name, kind, steps, timeout, user.name)
            else:
                job = await jobs.find(session, str(editing))
                await jobs.update(session, job, name, kind, steps, timeout, user.name)
    except TaskfleetError as exc:
        return await _editor(request, form, editing, exc)
    return RedirectResponse(f"{PREFIX}/jobs?saved=1", status_code=303)


@router.post("/{job_id}/run")
async def run_job(
    request: Request,
    job_id: int,
    user: Changing,
    targets: Texts = [],  # noqa: B006
    computers: Text = "",
) -> Response:
    user.require(Role.OPERATOR)
    chosen = run_form.chosen(targets, computers)
    state = ns_state(request)
    try:
        async with state.session() as session:
            job = await jobs.find(session, str(job_id))
            run = await runs.start_run(state, session, job.name, chosen, True, user.name)
    except TaskfleetError as exc:
        return await _list(request, exc.status_code, run_error=exc.message, run_job=job_id)
    return RedirectResponse(f"{PREFIX}/runs/{run.id}", status_code=303)


async def _subject(request: Request, job_id: int) -> run_form.Subject:
    async with ns_state(request).session() as session:
        job = await jobs.find(session, str(job_id))
        declared = (await job_plans.make(session, job)).declared
    # By name: runs.start_run looks a number up as a task's id first, not as the job's.
    base, back = f"{PREFIX}/jobs/{job.id}", (f"{PREFIX}/jobs", "Jobs")
    return run_form.subject(job.name, job.name, declared, base, back, "jobs")


@router.get("/{job_id}/run")
async def job_run_form(request: Request, job_id: int, user: Viewing) -> HTMLResponse:
    user.require(Role.OPERATOR)
    return await run_form.page(request, await _subject(request, job_id))


@router.post("/{job_id}/run-with")
async def job_run_with(request: Request, job_id: int, user: Changing) -> Response:
    """Start the job from the run form, or schedule it."""
    user.require(Role.OPERATOR)
    return await run_form.submit(request, await _subject(request, job_id), user)
