"""The one error tree of taskfleet.

Services raise these; one handler per HTTP server (``taskfleet.server.errors``)
maps them to a JSON response ``{"error": code, "message": text}`` whose
message tells a person what to do next. Clients (CLI, task server, agent)
turn such responses back into the same classes where they need to branch.

    TaskfleetError
    ├── InvalidInput        400  malformed, wrong type, out of range
    ├── Unauthenticated     401  no or wrong credential
    │   └── TokenRefused    401  an enrolment token not recognised, of the wrong kind,
    │                            revoked, expired or used up: the node needs a new one
    ├── Forbidden           403  authenticated, not allowed
    │   └── NotApproved     403  a task server that is pending or revoked (R1)
    ├── NotFound            404  unknown id or name
    ├── Conflict            409  would clash with what is stored
    ├── NotAssigned         409  agent asked a task server it is not assigned to;
    │                            it must ask the NS again (R3, R4)
    ├── PayloadTooLarge     413
    ├── TooManyRequests     429  slow down (console log-in after repeated failures)
    ├── Busy                503  full (open files) or stopping: come back after
    │                            ``retry_after_s`` (Retry-After); no fault of the server
    └── Unavailable         503  a dependency is down; try again
"""

from __future__ import annotations

__all__ = [
    "Busy",
    "Conflict",
    "Forbidden",
    "InvalidInput",
    "NotApproved",
    "NotAssigned",
    "NotFound",
    "PayloadTooLarge",
    "TaskfleetError",
    "TokenRefused",
    "TooManyRequests",
    "Unauthenticated",
    "Unavailable",
    "error_for_code",
]


class TaskfleetError(Exception):
    """Base of every error taskfleet raises on purpose."""

    status_code = 500
    code = "internal"

    def __init__(
        self, message: str, *, field: str | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        # The input field at fault, when there is one: forms show the message next to it.
        self.field = field
        # When to come back (the Retry-After header), when the server said so.
        self.retry_after_s = retry_after_s


class InvalidInput(TaskfleetError):
    status_code = 400
    code = "invalid_input"


class Unauthenticated(TaskfleetError):
    status_code = 401
    code = "unauthenticated"


class TokenRefused(Unauthenticated):
    """The enrolment token itself is refused, not a credential: enrolling again with the
    same token cannot help, so a node stops and says so (agent.ns_link)."""

    code = "token_refused"


class Forbidden(TaskfleetError):
    status_code = 403
    code = "forbidden"


class NotApproved(Forbidden):
    code = "not_approved"


class NotFound(TaskfleetError):
    status_code = 404
    code = "not_found"


class Conflict(TaskfleetError):
    status_code = 409
    code = "conflict"


class NotAssigned(Conflict):
    code = "not_assigned"


class PayloadTooLarge(TaskfleetError):
    status_code = 413
    code = "payload_too_large"


class TooManyRequests(TaskfleetError):
    status_code = 429
    code = "too_many_requests"


class Busy(TaskfleetError):
    """Refused for now, by design: a client waits ``retry_after_s`` and asks again.

    Not an ``Unavailable``: the server is up and answering, so an agent does not count
    it towards failing over (R4).
    """

    status_code = 503
    code = "busy"


class Unavailable(TaskfleetError):
    status_code = 503
    code = "unavailable"


_BY_CODE: dict[str, type[TaskfleetError]] = {
    cls.code: cls
    for cls in (
        InvalidInput,
        Unauthenticated,
        TokenRefused,
        Forbidden,
        NotApproved,
        NotFound,
        Conflict,
        NotAssigned,
        PayloadTooLarge,
        TooManyRequests,
        Busy,
        Unavailable,
    )
}


def error_for_code(code: str, message: str) -> TaskfleetError:
    """Rebuild the error a server sent as ``{"error": code, "message": ...}``."""
    return _BY_CODE.get(code, TaskfleetError)(message)
