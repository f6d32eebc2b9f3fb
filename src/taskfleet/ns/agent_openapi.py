"""The agents' hot-path endpoints, described for the NS's OpenAPI document.

``/agent/poll``, ``/agent/channel``, ``/agent/status`` and ``/agent/files/{sha256}`` are
plain Starlette routes (``agent_endpoints``), served by every task server and by the NS
itself for the computers it serves (R3). They skip FastAPI's request handling, which
``bench/poll.py`` measured at about 15 % of the poll rate, so FastAPI cannot describe
them. The stand-ins below are never mounted: ``ns.openapi`` builds the document from the
app's routes and these, so a client author sees the whole protocol, with the request
and reply schemas of the protocol's message types (``protocol.messages``), the same
ones the real endpoints encode and check.

``tests/ns/test_api_shape.py`` checks that every plain ``/agent/`` route the NS serves
is described here, and that the limits below are the endpoints' own.
"""

from __future__ import annotations

from typing import Annotated, Any, NoReturn

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse

from taskfleet.protocol.messages import ChannelReply, PollReply, StatusAck, StatusBatch

# agent_endpoints.api's limits of GET /agent/channel?wait=
MAX_WAIT_S = 300.0
DEFAULT_WAIT_S = 50.0
SHA256_HEADER = "X-Taskfleet-SHA256"  # agent_endpoints.files

CREDENTIAL = {
    "name": "Authorization",
    "in": "header",
    "required": True,
    "schema": {"type": "string"},
    "description": "`Bearer <credential>`: the agent's credential, as enrolment gave it "
    "(`POST /api/agent/enrol`). Over TLS the connection's client certificate must be "
    "this agent's too.",
}
DESCRIPTIONS = {
    401: "No agent credential, or one this server does not recognise: enrol again",
    403: "The credential is not allowed this: a client certificate that is not this "
    "agent's or is revoked, a status event of another computer, a file the agent was "
    "handed no work for",
    409: "This server does not serve the agent: ask the NS for its assignment again "
    "(`POST /api/agent/assignment`)",
    503: "Busy (no room for another channel, or stopping) or unavailable (the task "
    "server cannot reach the NS to check a credential): come back after `Retry-After` "
    "seconds",
}

router = APIRouter(tags=["agent"])


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    return {code: {"description": DESCRIPTIONS[code], "content": error} for code in codes}


def _described() -> NoReturn:
    raise NotImplementedError("a stand-in for the OpenAPI document, never mounted")


AGENT = {"parameters": [CREDENTIAL]}  # openapi_extra: FastAPI appends it to the others


@router.get("/agent/poll", openapi_extra=AGENT, responses=_errors(401, 403, 409, 503))
async def poll() -> PollReply:
    """Work waiting for the calling agent, instances to stop, and its current settings
    (R5). Called every task request interval (``settings.task_request_interval_s``);
    nothing new is ``{"work": [], ...}``."""
    _described()


@router.get("/agent/channel", openapi_extra=AGENT, responses=_errors(401, 403, 409, 503))
async def channel(
    wait: Annotated[
        float,
        Query(gt=0, le=MAX_WAIT_S, description="seconds the agent will wait for the reply"),
    ] = DEFAULT_WAIT_S,
) -> ChannelReply:
    """The notification channel (R6): a long poll held until work arrives for the agent
    (``tickle`` true, with the work when there is some) or until the agent's own next
    renewal instant (``tickle`` false). The server may hold it up to ``wait`` plus
    10 seconds (R11); the agent opens the next one at once."""
    _described()


@router.post("/agent/status", openapi_extra=AGENT, responses=_errors(401, 403, 409, 503))
async def status(batch: StatusBatch) -> StatusAck:
    """A batch of the agent's status events (R8): at most 1,000, each of the calling
    agent's own computer, every field checked (R12). A batch with a bad field is refused
    whole (400 naming it); the reply names each event accepted, and each rejected with
    why. Sending an event again is harmless: its ``id`` makes it one."""
    _described()


@router.get(
    "/agent/files/{sha256}",
    openapi_extra=AGENT,
    response_class=StreamingResponse,  # the file's bytes, not JSON
    responses={
        200: {
            "description": f"The file's bytes; its SHA-256 in `{SHA256_HEADER}`, which the "
            "agent checks before it writes anything",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
            "headers": {SHA256_HEADER: {"schema": {"type": "string"}}},
        },
        **_errors(401, 403, 409, 503),
    },
)
async def fetch_file(
    sha256: Annotated[
        str,
        Path(pattern="^[0-9a-f]{64}$", description="the file's SHA-256, lower-case hex"),
    ],
) -> StreamingResponse:
    """A copy-file task's file, streamed: only to an agent handed work copying it."""
    _described()
