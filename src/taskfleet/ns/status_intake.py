"""Status as it enters the NS: every event checked on its own, applied in isolation (R12).

One agent's bad event must never stop another agent's status (R8, R12). A task
server's batch mixes thousands of agents' events, so the NS judges each event
alone, never the batch:

1. ``checked``: every field of every event against ``protocol.fields``; an event
   that fails is rejected, with the field and why, and the others go on.
2. ``ingest_isolated``: the batch is applied in a savepoint; if the database still
   refuses a value (a data error: SQLSTATE class 22 or 23, or a value its driver
   cannot encode), the batch is split in halves, each retried in its own savepoint,
   down to the single events at fault, which are rejected with the database's
   reason. A fault that is not the data's (a lost connection, a lock timeout) fails
   the whole request instead: the task server keeps the batch and sends it again,
   so nothing is rejected for a reason that would have passed.
3. Events for computers the relaying task server never served are rejected and
   audited (``status.refused``), never applied.

The reply (``StatusAck``) names every rejected event and why; the task server moves
them to its dead letters (``taskserver.dead_letters``).
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy.exc import DataError, IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncSession

from taskfleet.ns import audit
from taskfleet.ns.status import Ingested, ingest
from taskfleet.protocol.fields import text_problem
from taskfleet.protocol.messages import StatusAck, StatusEvent
from taskfleet.server.validation import describe_validation
from taskfleet.storage.models import TaskServer

log = logging.getLogger("taskfleet.ns.status")
_EVENT = TypeAdapter(StatusEvent)
MAX_REASON = 500
MAX_AUDITED = 100  # computer ids named in one audit entry


def checked(raw: list[Any]) -> tuple[list[StatusEvent], Ingested]:
    """The events that pass every field check; the others rejected with the reason."""
    refused = Ingested(StatusAck(accepted=[]), set())
    events: list[StatusEvent] = []
    for index, data in enumerate(raw):
        try:
            events.append(_EVENT.validate_python(data))
        except ValidationError as exc:
            event_id = data.get("id") if isinstance(data, dict) else None
            if not isinstance(event_id, str) or text_problem(event_id) is not None:
                # Nothing a reply can name it by (no JSON encoder writes a lone surrogate).
                # A task server checks its events before sending: only a foreign sender's.
                log.warning("status event %d without a usable id refused", index)
                continue
            reason = describe_validation(list(exc.errors()))
            refused.reject(event_id, reason[:MAX_REASON])
    return events, refused


async def ingest_isolated(
    session: AsyncSession, events: list[StatusEvent], via_task_server: int | None
) -> Ingested:
    """``status.ingest`` in a savepoint; a data error splits the batch to find its events."""
    try:
        async with session.begin_nested():
            return await ingest(session, events, via_task_server)
    except Exception as exc:
        reason = _data_fault(exc)
        if reason is None:
            raise
        if len(events) == 1:
            event = events[0]
            log.warning(
                "status event %r (instance %s, computer %s) refused by the database: %s",
                event.id,
                event.instance_id,
                event.computer_id,
                reason,
            )
            done = Ingested(StatusAck(accepted=[]), set())
            done.reject(event.id, f"the database cannot store it: {reason}"[:MAX_REASON])
            return done
    half = len(events) // 2
    done = await ingest_isolated(session, events[:half], via_task_server)
    done.merge(await ingest_isolated(session, events[half:], via_task_server))
    return done


async def relayed(session: AsyncSession, raw: list[Any], via_task_server: int) -> Ingested:
    """A task server's batch: checked, applied in isolation, foreign computers audited."""
    events, done = checked(raw)
    if events:
        done.merge(await ingest_isolated(session, events, via_task_server))
    if done.foreign:
        ts = await session.get(TaskServer, via_task_server)
        name = ts.name if ts is not None else str(via_task_server)
        audit.record(
            session,
            f"taskserver:{name}",
            "status.refused",
            name,
            reason="status for computers this task server never served",
            computers=sorted(done.foreign)[:MAX_AUDITED],
            count=len(done.foreign),
        )
    return done


def _data_fault(exc: BaseException) -> str | None:
    """Why the database refused the data, when it is the data's fault; else None."""
    if isinstance(exc, UnicodeError | OverflowError):
        return _short(exc)
    if not isinstance(exc, StatementError):
        return None
    sqlstate = str(getattr(exc.orig, "sqlstate", "") or "")
    if sqlstate[:2] in ("22", "23"):  # data exception, integrity constraint violation
        return _short(exc.orig)
    if sqlstate:
        return None  # a lock, a lost connection, ...: the whole batch is retried later
    if isinstance(exc, IntegrityError | DataError):  # SQLite names no SQLSTATE
        return _short(exc.orig)
    cause: BaseException | None = exc.orig
    while cause is not None:
        # A value the driver cannot encode: a lone surrogate, an integer out of range.
        if isinstance(cause, UnicodeError | OverflowError | ValueError):
            return _short(cause)
        cause = cause.__cause__
    return None


def _short(exc: BaseException | None) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
