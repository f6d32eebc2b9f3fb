"""Computers as the API and the console show them: searched, sorted, paged, in detail."""

from __future__ import annotations

from sqlalchemy import Text, cast, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.errors import InvalidInput
from taskfleet.ns import collections, computers, like
from taskfleet.ns.fleet_replies import ComputerDetail, ComputerRow
from taskfleet.storage.models import Computer, Instance, Job, Run, Task, TaskServer

# Columns a list may be sorted by; the name breaks ties so pages never overlap.
SORTS = {
    "name": Computer.name,
    "os": Computer.os,
    "last_contact": Computer.last_contact,
    "task_server": Computer.task_server_id,
    "assign_step": Computer.assign_step,
}
MAX_SEARCH = 200


def view(c: Computer, ts_names: dict[int, str], identity: bool = False) -> ComputerRow:
    """A computer as shown; its hardware id (what an enrolment claims it by) only with
    ``identity``, for admins: viewers and operators never see identity secrets."""
    shown: ComputerRow = {
        "id": c.id,
        "name": c.name,
        "addresses": c.addresses,
        "os": c.os,
        "agent_version": c.agent_version,
        "interpreters": c.interpreters,
        "facts": c.facts,
        # The last inventory's measurements, and when it came (ns.inventory).
        "inventory": c.inventory,
        "inventory_at": c.inventory_at,
        "last_contact": c.last_contact,
        "task_server": ts_names.get(c.task_server_id)
        if c.task_server_id
        else ("notification server" if c.assign_step == "ns-fallback" else None),
        "assign_step": c.assign_step,
        "assign_reason": c.assign_reason,
        "assigned_at": c.assigned_at,
    }
    if identity:
        shown["hardware_id"] = c.hardware_id
        shown["reset_at"] = c.reset_at  # reset, and not enrolled again since
    return shown


async def task_server_names(session: AsyncSession) -> dict[int, str]:
    return dict((await session.execute(select(TaskServer.id, TaskServer.name))).all())


async def search(
    session: AsyncSession,
    text: str = "",
    sort: str = "name",
    descending: bool = False,
    limit: int = 100,
    offset: int = 0,
    identity: bool = False,
) -> tuple[int, list[ComputerRow]]:
    """How many computers match ``text`` (name, OS or address), and one page of them."""
    if sort not in SORTS:
        raise InvalidInput(f"sort {sort!r} must be one of: {', '.join(SORTS)}")
    if len(text) > MAX_SEARCH or "\x00" in text:
        raise InvalidInput(f"search text: at most {MAX_SEARCH} characters")
    query = select(Computer)
    if text:
        pattern = like.containing(text)
        query = query.where(
            or_(
                Computer.name.ilike(pattern, escape=like.ESCAPE),
                Computer.os.ilike(pattern, escape=like.ESCAPE),
                cast(Computer.addresses, Text).ilike(pattern, escape=like.ESCAPE),
            )
        )
    total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    column = SORTS[sort]
    order = [column.desc().nulls_last() if descending else column.asc().nulls_first()]
    page = await session.scalars(
        query.order_by(*order, Computer.name, Computer.id).limit(limit).offset(offset)
    )
    names = await task_server_names(session)
    return total, [view(c, names, identity) for c in page.all()]


async def detail(
    session: AsyncSession, key: str, history: int = 20, identity: bool = False
) -> ComputerDetail:
    """One computer: facts, collections, task server and why, recent runs."""
    computer = await computers.find(session, key)
    membership = await collections.load_membership(session, [computer.id])
    rows = await session.execute(
        select(Instance, func.coalesce(Task.name, Job.name, "(a removed job)"))
        .join(Run, Run.id == Instance.run_id)
        .outerjoin(Task, Task.id == Run.task_id)
        .outerjoin(Job, Job.id == Run.job_id)
        .where(Instance.computer_id == computer.id)
        .order_by(Instance.id.desc())
        .limit(history)
    )
    return {
        **view(computer, await task_server_names(session), identity),
        "collections": membership.collections_of(computer),
        "runs": [
            {
                "run": i.run_id,
                "task": name,
                "state": i.state,
                "return_code": i.return_code,
                "finished_at": i.finished_at,
            }
            for i, name in rows.all()
        ],
    }
