"""Messages that cross the wire, as plain dataclasses.

The servers validate them (FastAPI accepts standard dataclasses as request
bodies); the agent builds and reads them without any server framework.
Field names are the JSON keys.

Every field a node sends has a constrained type from ``protocol.fields`` (R12): text
without NUL or lone surrogates, finite floats, integers that fit their column, ids
and lists of a bounded size. Servers check them where a message enters; script
output alone is escaped rather than refused (see ``fields``).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from taskfleet.errors import InvalidInput
from taskfleet.protocol import step_records
from taskfleet.protocol.fields import (
    DEFAULT_OUTPUT_LIMIT,
    MAX_OUTPUT_LIMIT,
    Count,
    EventId,
    Finite,
    Int32,
    Limits,
    LongText,
    Name,
    Output,
    RowId,
    ShortText,
    StateName,
    Time,
    bounded_list,
    text,
)

PROTOCOL_VERSION = 1

# Outputs are capped by the agent at its configured limit (AgentSettings), and by every
# server at MAX_OUTPUT_LIMIT (protocol.fields.Output), with TRUNCATION_MARKER.
# Status travels in requests of about STATUS_REQUEST_BYTES; one event with the largest
# output goes alone, and the status endpoints take bodies up to STATUS_BODY_BYTES for it
# (as JSON a character may take 6 bytes: control characters become \u00XX).
STATUS_REQUEST_BYTES = 1024 * 1024
# A client job's final status also carries its step records, their outputs within
# STEPS_OUTPUT_BUDGET (protocol.step_records).
STATUS_BODY_BYTES = 6 * (MAX_OUTPUT_LIMIT + step_records.STEPS_OUTPUT_BUDGET + 1024) + 64 * 1024


class InstanceState(enum.StrEnum):
    """States of one computer's instance of a run (SPEC section 2)."""

    PENDING = "Pending"
    RECEIVED = "Received"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    TIMED_OUT = "TimedOut"
    CANCELED = "Canceled"
    EXPIRED = "Expired"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def rank(self) -> int:
        """Order of progress; a status never moves an instance backwards."""
        return _RANK[self]


_TERMINAL = frozenset(
    {
        InstanceState.SUCCEEDED,
        InstanceState.FAILED,
        InstanceState.TIMED_OUT,
        InstanceState.CANCELED,
        InstanceState.EXPIRED,
    }
)
# The states of an instance not yet ended, as stored: what "still to do" queries match.
UNFINISHED = tuple(s.value for s in InstanceState if s not in _TERMINAL)
_RANK = {
    InstanceState.PENDING: 0,
    InstanceState.RECEIVED: 1,
    InstanceState.RUNNING: 2,
    **dict.fromkeys(_TERMINAL, 3),
}


class Approval(enum.StrEnum):
    """A task server's standing with the NS (R1): registered ``pending``, then an
    admin's ``approved`` or ``revoked``. Only an approved one serves agents. Stored and
    sent as these strings (``task_server.approval``, Registered, HeartbeatReply)."""

    PENDING = "pending"
    APPROVED = "approved"
    REVOKED = "revoked"


class TaskType(enum.StrEnum):
    RUN_SCRIPT = "run-script"
    RESTART_AGENT = "restart-agent"
    COPY_FILE = "copy-file"  # agent.copy_file, ns.task_types
    POWER_CONTROL = "power-control"  # agent.power
    INVENTORY = "inventory"  # agent.inventory, ns.inventory


INTERPRETERS = ("sh", "bash", "python", "pwsh", "powershell", "cmd")  # agent.interpreters

MAX_ADDRESSES = 64
MAX_FACTS = 256
MAX_STATUS_EVENTS = 5000  # per batch, task server to NS (agents send at most 1000)
MAX_SEEN = 100_000  # computers in one heartbeat
MAX_KNOWN_RUNS = 10_000
MAX_CANCELS = 1000  # instance ids in one channel or poll reply (docs/work-model.md, "Cancel")
Token = Annotated[str, text(1024, min_length=1)]
Pem = Annotated[str, text(16384)]
# A certificate serial number (up to 159 bits) as decimal text.
Serial = Annotated[str, Limits(max_length=64, pattern=r"^[0-9]*$")]
# A computer id as a JSON key (a heartbeat's 'seen'): decimal digits that fit the column.
ComputerKey = Annotated[str, Limits(max_length=10, pattern=r"^[0-9]+$")]


@dataclass
class Facts:
    """What an agent (or a task server, which is a computer too) says about itself."""

    name: Name
    hardware_id: Name
    addresses: Annotated[list[ShortText], bounded_list(MAX_ADDRESSES)] = field(
        default_factory=list
    )  # "10.1.2.3/24"
    os: ShortText = ""
    agent_version: Annotated[str, text(64)] = ""
    interpreters: Annotated[list[ShortText], bounded_list(32)] = field(default_factory=list)
    facts: Annotated[dict[ShortText, ShortText], bounded_list(MAX_FACTS)] = field(
        default_factory=dict
    )


@dataclass
class Enrolment:
    token: Token
    facts: Facts
    # The agent's certificate request (protocol.pki); the NS signs it at enrolment.
    # Empty only for an NS on plain HTTP (--insecure-http).
    csr: Pem = ""


@dataclass
class Enrolled:
    computer_id: int
    credential: str
    certificate: str = ""  # PEM chain: the agent's certificate first
    ca_bundle: str = ""  # PEM: every CA to trust, the current one first


@dataclass
class AssignmentRequest:
    facts: Facts
    # The task server the agent gave up on after 3 failed attempts (R4), if any.
    failed_task_server: RowId | None = None
    reason: LongText = ""


@dataclass
class AgentSettings:
    task_request_interval_s: float = 300.0
    send_status_interval_s: float = 60.0
    # Script output kept per instance, in bytes (agent configuration: output_limit_kib).
    output_limit_bytes: int = DEFAULT_OUTPUT_LIMIT
    # How often the agent sends its inventory (agent configuration: inventory_interval_h).
    inventory_interval_s: float = 86400.0


@dataclass
class Assignment:
    url: str
    task_server_id: int | None  # None: the NS itself serves this computer
    task_server_name: str
    step: str
    reason: str
    settings: AgentSettings


@dataclass
class WorkItem:
    instance_id: int
    run_id: int
    task_type: str
    params: dict[str, Any]
    timeout_s: float
    live: bool = False
    # The run's parameter values ({{param.NAME}}, protocol.templates), secrets decrypted:
    # they travel only over TLS to the target agent, which masks those named in
    # ``secret_params`` in the output it reports.
    param_values: dict[str, str] = field(default_factory=dict)
    secret_params: list[str] = field(default_factory=list)
    # The task's retries and back-off base: the agent runs a failed script again, all
    # attempts inside timeout_s (agent.retries).
    retries: int = 0
    retry_backoff_s: float = 10.0


@dataclass
class InventoryReport:
    """An agent's inventory (``POST /api/agent/inventory``): its facts, which the NS
    stores and collection rules read, and measurements that change all the time and
    that no rule reads (so they are kept apart and change no membership)."""

    facts: Facts
    uptime_s: Finite | None = None
    disk_free_bytes: Annotated[int, Limits(ge=0, le=2**63 - 1)] | None = None
    memory_available_bytes: Annotated[int, Limits(ge=0, le=2**63 - 1)] | None = None


@dataclass
class PollReply:
    work: list[WorkItem]
    settings: AgentSettings
    # Instances to stop (canceled, or expired while the task server held them): the
    # agent kills what runs of them and never starts them (agent.cancel; checked with
    # ``cancel_ids``). Older task servers send none.
    cancel: list[int] = field(default_factory=list)


@dataclass
class ChannelReply:
    tickle: bool
    # Work waiting when the channel answered: the agent takes it as from a poll, and
    # saves the round trip (an agent that ignores it polls, and gets it after the
    # task server's hand-out retry delay).
    work: list[WorkItem] = field(default_factory=list)
    cancel: list[int] = field(default_factory=list)  # as in PollReply


def cancel_ids(values: Any) -> list[int]:
    """A reply's ``cancel`` list, checked: instance ids (1 .. 2**31-1), at most
    MAX_CANCELS; ValueError names what is wrong (the agent drops the reply's cancels)."""
    if not isinstance(values, list) or len(values) > MAX_CANCELS:
        raise ValueError(f"cancel: expected a list of at most {MAX_CANCELS} instance ids")
    for value in values:
        if type(value) is not int or not 1 <= value <= 2**31 - 1:
            raise ValueError(f"cancel: {value!r} is not an instance id")
    return list(values)


@dataclass
class StatusEvent:
    """One status change of one instance; ``id`` is unique and makes resends harmless (R8)."""

    id: EventId
    instance_id: RowId
    computer_id: RowId
    state: StateName
    at: Time
    return_code: Int32 | None = None
    output: Output | None = None  # escaped, never refused: NUL -> U+2400 (fields)
    live: bool = False
    # Why it ended so, when the agent knows better than the output can say (e.g. "agent
    # restarted during the run"); the NS keeps the first reason an instance gets.
    reason: ShortText | None = None
    # A client job's final status: one record per step it ran (protocol.step_records).
    # Typed loosely on purpose: the NS checks the records on their own, so a bad one is
    # refused alone and never costs the instance its final status. Older agents: none.
    steps: Any = None


@dataclass
class StatusBatch:
    events: Annotated[list[StatusEvent], bounded_list(MAX_STATUS_EVENTS)]


@dataclass
class StatusAck:
    accepted: list[str]
    # Events the receiver will never apply (a field it cannot store, unknown instance,
    # not this sender's computer, a database error on that event alone). The sender
    # sets them aside too (the task server's dead letters), so a bad event cannot
    # block a spool forever and the others flow on (R12).
    rejected: list[str] = field(default_factory=list)
    # Why, per rejected event id (older receivers send none).
    reasons: dict[str, str] = field(default_factory=dict)


T = TypeVar("T")


def to_json(message: Any) -> Any:
    """A message as JSON-ready data."""
    return dataclasses.asdict(message)


def event_json(event: StatusEvent) -> dict[str, Any]:
    """``to_json`` for a status event, several times faster: its fields are plain values.

    Status events are what task servers handle by the thousand.
    """
    return dict(event.__dict__)


def event_size(event: StatusEvent) -> int:
    """About how many bytes ``event`` takes as JSON in a request: exact for its output
    (what makes an event large), a generous allowance for the rest."""
    output = event.output
    if event.steps is not None:  # a client job's final status: rare, counted generously
        return 256 + 6 * (len(output or "") + step_records.output_size(event.steps)) + 4096
    if not output:
        return 256
    if len(output) < 4096:
        return 256 + 6 * len(output)
    return 256 + len(json.dumps(output, ensure_ascii=False).encode("utf-8", "replace"))


def by_request_size(
    events: list[StatusEvent],
    budget: int = STATUS_REQUEST_BYTES,
    size_of: Callable[[StatusEvent], int] = event_size,
) -> list[list[StatusEvent]]:
    """``events`` in order, in requests of at most ``budget`` bytes (as ``size_of`` tells);
    an event larger than the budget goes in a request of its own."""
    requests: list[list[StatusEvent]] = [[]]
    size = 0
    for event in events:
        weight = size_of(event)
        if requests[-1] and size + weight > budget:
            requests.append([])
            size = 0
        requests[-1].append(event)
        size += weight
    return [r for r in requests if r]


def from_json(cls: type[T], data: Any) -> T:
    """Build ``cls`` from JSON data, recursing into the fields whose annotations name a
    message (``Facts``, ``list[WorkItem]``, ``AgentSettings | None``) or an enum.

    Unknown keys are ignored so that a newer peer can add fields. Other values are taken
    as they come: servers check them where a message enters (``fields``). Not an object,
    a required field missing, a nested message of the wrong shape or an unknown enum
    value: InvalidInput, naming where.
    """
    return _build(cls, data, cls.__name__)


_Convert = Callable[[Any, str], Any]  # (JSON value, where it is) -> the field's value


def _build(cls: type[T], data: Any, where: str) -> T:
    if not isinstance(data, dict):
        raise InvalidInput(f"{where}: expected a JSON object, got {type(data).__name__}")
    kwargs: dict[str, Any] = {}
    fields = _FIELDS.get(cls) or _FIELDS.setdefault(cls, _fields(cls))
    for key, (convert, required) in fields.items():
        if key in data:
            value = data[key]
            if convert is not None and value is not None:
                value = convert(value, f"{where}.{key}")
            kwargs[key] = value
        elif required:
            raise InvalidInput(f"{where}: {key!r} is missing", field=key)
    return cls(**kwargs)


_FIELDS: dict[type[Any], dict[str, tuple[_Convert | None, bool]]] = {}


def _fields(cls: type[Any]) -> dict[str, tuple[_Convert | None, bool]]:
    """Each field's converter (None: the value as it comes) and whether it is required,
    from the class's annotations (strings under ``from __future__``); kept in _FIELDS."""
    hints = typing.get_type_hints(cls)  # Annotated's constraints left out
    return {
        f.name: (
            _converter(hints[f.name]),
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
        )
        for f in dataclasses.fields(cls)
    }


def _converter(kind: Any) -> _Convert | None:
    origin = typing.get_origin(kind)
    if origin is typing.Union or origin is types.UnionType:
        present = [k for k in typing.get_args(kind) if k is not type(None)]
        # None is left as it comes (above): the class says whether it may be None.
        return _converter(present[0]) if len(present) == 1 else None
    if origin is list:
        item = _converter(typing.get_args(kind)[0])
        if item is None:
            return None

        def each(value: Any, where: str) -> list[Any]:
            if not isinstance(value, list):
                raise InvalidInput(f"{where}: expected a list, got {type(value).__name__}")
            return [item(v, f"{where}[{i}]") for i, v in enumerate(value)]

        return each
    if dataclasses.is_dataclass(kind):
        message = typing.cast(type[Any], kind)
        return lambda value, where: _build(message, value, where)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        choices = ", ".join(str(member.value) for member in kind)

        def member(value: Any, where: str) -> Any:
            try:
                return kind(value)
            except ValueError:
                raise InvalidInput(f"{where}: {value!r} is not one of {choices}") from None

        return member
    return None


# --- task server <-> notification server -------------------------------------------


@dataclass
class Registration:
    token: Token
    facts: Facts
    url: Annotated[str, text(1024, min_length=1)]
    client_limit: Int32 = 5000
    heartbeat_period_s: Finite = 10.0
    # The task server's certificate request: approval signs it (R1).
    csr: Pem = ""


@dataclass
class Registered:
    task_server_id: int
    name: str
    credential: str
    approval: Approval


@dataclass
class Heartbeat:
    # computer id (as text: JSON keys) -> when the task server last heard from it
    seen: Annotated[dict[ComputerKey, Time], bounded_list(MAX_SEEN)] = field(default_factory=dict)
    open_channels: Count = 0
    spooled: Count = 0
    # Its --client-limit and --heartbeat, so new values take effect when it restarts
    # (it registers only once). None: unchanged. An admin's setting on the NS wins.
    client_limit: Int32 | None = None
    heartbeat_period_s: Finite | None = None
    # Notification channels its open-files limit allows (server.capacity); None: unknown.
    channel_capacity: Int32 | None = None
    # Status events set aside in its dead-letter file (the NS rejected them, or they
    # could not be stored), and why the latest was; None: an older task server.
    dead_letters: Count | None = None
    dead_letter_reason: Annotated[str, text(500)] | None = None
    # The serial of the certificate it serves with ("" for none yet): the reply carries
    # a new one when approval signed one or the current one nears expiry.
    certificate_serial: Serial = ""


@dataclass
class HeartbeatReply:
    approval: Approval
    enabled: bool
    agents_epoch: int
    certificate: str = ""  # PEM chain, when the task server should start using it
    # Changes whenever a certificate is revoked: fetch /api/ca/crl again.
    crl_number: int = 0
    # SHA-256 of the CA bundle: changes when the CA rotates; fetch /api/ca again.
    ca_bundle_id: str = ""


@dataclass
class Events:
    version: int
    agents_epoch: int
    # Whether any computer of this task server has work to fetch (``/api/ts/work``).
    work_waiting: bool = False


@dataclass
class AgentEntry:
    computer_id: int
    credential_hash: str
    settings: AgentSettings


@dataclass
class AgentMap:
    agents_epoch: int
    agents: list[AgentEntry]


@dataclass
class RunTask:
    """What every instance of one run shares; travels once per task server and is cached."""

    run_id: int
    task_type: str
    params: dict[str, Any]
    timeout_s: float
    live: bool = False
    # As in WorkItem. A task server holds them in memory only (taskserver.work_cache).
    param_values: dict[str, str] = field(default_factory=dict)
    secret_params: list[str] = field(default_factory=list)
    retries: int = 0  # as in WorkItem
    retry_backoff_s: float = 10.0


@dataclass
class WorkRef:
    """One instance to hand to one computer; the task itself is the run's ``RunTask``."""

    computer_id: int
    instance_id: int
    run_id: int


@dataclass
class WorkRequest:
    """A task server asks for the work waiting for its computers, many at a time."""

    limit: Int32 = 5000
    # Runs whose RunTask the task server holds already: the reply leaves them out.
    known_runs: Annotated[list[RowId], bounded_list(MAX_KNOWN_RUNS)] = field(default_factory=list)


@dataclass
class WorkBatch:
    work: list[WorkRef]
    runs: list[RunTask]
    more: bool = False  # the limit was reached: ask again at once
    # Instances to withdraw from the cache or to stop on their agents (ns.cancel):
    # canceled, or expired while waiting here. Older NSs send none.
    cancel: list[WorkRef] = field(default_factory=list)


@dataclass
class Refusal:
    """What a task server refused one of its agents: a request naming another computer
    (``action``: what it tried, e.g. "status"). Reported to the NS for its audit log."""

    computer_id: int
    action: str
    why: str = ""


@dataclass
class Refusals:
    refusals: list[Refusal]


@dataclass
class CertificateRequest:
    """An enrolled node asks for a (new) certificate: first one, renewal, new CA."""

    csr: Pem


@dataclass
class IssuedCertificate:
    certificate: str  # PEM chain
    ca_bundle: str


@dataclass
class CABundle:
    """Every CA a node must trust (the current one first) and the current one's
    fingerprint: public, so a node can fetch it before it trusts anything and compare
    the fingerprint with the one it was given at install."""

    bundle: str
    fingerprint: str
    bundle_id: str


@dataclass
class RevocationList:
    crl: str  # PEM, signed by the current CA
    number: int
