"""The run form, one for tasks and jobs: targets, exclusions, when, report, expiry,
completion requirements and the declared parameters.

*When* is now, once at a date and time, or recurring on a cron expression, both in
a time zone. Now starts the run (``ns.runs``); the other two make a schedule through
``ns.schedules``, as the schedules page and the API do, which keeps the form's other
choices as it keeps theirs and starts a run with them at each occurrence. Every
check is the services' own: a mistake comes back naming its field, shown next to
it, and nothing is started or stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from taskfleet.console import task_params
from taskfleet.console.schedules import names, options_of, requirements_of, timing_of
from taskfleet.console.sessions import ConsoleUser
from taskfleet.console.web import PREFIX, render
from taskfleet.errors import InvalidInput, TaskfleetError
from taskfleet.ns import collections as collections_
from taskfleet.ns import expiry, runs, schedules
from taskfleet.ns.state import ns_state

NEEDS = ("min_wait_s", "max_wait_s", "min_count", "min_share")  # completion requirements
WHEN = ("now", "at", "cron")
TEXTS = ("computers", "expires_in", "exclude", "ignore_windows", *NEEDS, "at", "cron", "timezone")


@dataclass
class Subject:
    """What the form runs: a task or a job, and where its pages are."""

    key: str  # what runs.start_run and schedules.Plan find it by: a task's id, a job's name
    name: str
    declared: list[dict[str, Any]]  # its parameters, as shown (secret defaults masked)
    action: str  # where the form posts
    back: tuple[str, str]  # (link, label) of the list it came from
    page: str  # the navigation entry it belongs to
    secret: set[str] = field(default_factory=set)  # names of its secret parameters


def subject(
    key: str, name: str, declared: list[Any], base: str, back: tuple[str, str], page: str
) -> Subject:
    """The form of a task or job whose pages are under ``base`` (its run-with posts there);
    ``declared`` are its ``parameters.Declared``."""
    return Subject(
        key=key,
        name=name,
        declared=[d.shown() for d in declared],
        action=f"{base}/run-with",
        back=back,
        page=page,
        secret={d.name for d in declared if d.secret},
    )


def chosen(targets: list[str], computers: str) -> list[str]:
    """The collections picked in the list and the computers typed in, together."""
    return [t for t in targets if t] + names(computers)


async def page(
    request: Request,
    subject: Subject,
    given: dict[str, Any] | None = None,
    error: TaskfleetError | None = None,
) -> HTMLResponse:
    async with ns_state(request).session() as session:
        collections = await collections_.names(session)
    context = {
        "subject": subject,
        "declared": subject.declared,
        "collections": collections,
        "given": given or {},
        "error": error.message if error else "",
        # ns.completion names requirements.FIELD; the form's inputs are FIELD
        "error_field": error.field.removeprefix("requirements.") if error and error.field else None,
    }
    status = error.status_code if error else 200
    return await render(request, "run_form.html", context, status_code=status, page=subject.page)


def given_of(fields: Mapping[str, Any], targets: list[str]) -> dict[str, Any]:
    """The form as submitted, to start from and to show again after a mistake."""
    given: dict[str, Any] = {k: str(fields.get(k, "")) for k in TEXTS}
    given["targets"] = targets
    given["values"] = task_params.run_values(fields)
    given["report"] = str(fields.get("report", runs.LIVE))  # live unless buffered is chosen
    given["when"] = str(fields.get("when", "now"))
    return given


async def submit(request: Request, subject: Subject, user: ConsoleUser) -> Response:
    """Start the run now, or make its schedule; the form again with the mistake if refused."""
    fields = await request.form()
    given = given_of(fields, [str(t) for t in fields.getlist("targets")])
    try:
        if given["report"] not in runs.REPORTS:
            raise InvalidInput("report is 'live' or 'buffered'", field="report")
        if given["when"] not in WHEN:
            raise InvalidInput("when is now, at a time, or recurring (cron)", field="when")
        if given["when"] == "now":
            run_id = await _start(request, subject, user, given)
            return RedirectResponse(f"{PREFIX}/runs/{run_id}", status_code=303)
        made = await _schedule(request, subject, user, given)
    except TaskfleetError as exc:
        # Secret values are not sent back to the browser: typed again after a mistake.
        given["values"] = {k: v for k, v in given["values"].items() if k not in subject.secret}
        return await page(request, subject, given, exc)
    return RedirectResponse(f"{PREFIX}/schedules?saved={made}", status_code=303)


async def _start(
    request: Request, subject: Subject, user: ConsoleUser, given: dict[str, Any]
) -> int:
    state = ns_state(request)
    expires_in = given["expires_in"].strip()  # (ns.expiry) empty: 7 days
    expires_in_s = expiry.duration(expires_in, "expires_in") if expires_in else None
    requirements = requirements_of(given)  # checked by ns.completion
    async with state.session() as session:
        run = await runs.start_run(
            state,
            session,
            subject.key,
            chosen(given["targets"], given["computers"]),
            given["report"] == runs.LIVE,
            user.name,
            params=given["values"],
            expires_in_s=expires_in_s,
            exclude=names(given["exclude"]),
            ignore_windows=given["ignore_windows"] == "on",
            requirements=requirements,
        )
        return run.id


async def _schedule(
    request: Request, subject: Subject, user: ConsoleUser, given: dict[str, Any]
) -> int:
    """A schedule with the form's choices, as the schedules page and the API make one."""
    state = ns_state(request)
    at, cron, timezone = timing_of(given)
    plan = schedules.Plan(
        subject.key,
        chosen(given["targets"], given["computers"]),
        names(given["exclude"]),
        dict(given["values"]),
        given["report"] == runs.LIVE,
        given["ignore_windows"] == "on",
        requirements_of(given),
        options_of(given),  # the expiry of each run it starts
    )
    async with state.session() as session:
        made = await schedules.create(
            session, plan, user.name, at, cron, timezone, box=state.secrets
        )
        return made.id
