"""The NS database schema. Times are UNIX epoch seconds (float) in UTC.

Change a model only together with a new migration in ``migrations/versions``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# The largest id a client may name: integer columns are 32-bit on PostgreSQL.
MAX_ID = 2**31 - 1


def is_id(key: str) -> bool:
    """Does ``key`` name a row by id (ASCII digits, within range)?"""
    return key.isascii() and key.isdigit() and int(key) <= MAX_ID


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON, list[Any]: JSON}


class Computer(Base):
    __tablename__ = "computer"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), index=True)
    hardware_id: Mapped[str] = mapped_column(String(255), unique=True)
    addresses: Mapped[list[str]] = mapped_column(default=list)
    os: Mapped[str] = mapped_column(String(255), default="")
    agent_version: Mapped[str] = mapped_column(String(64), default="")
    interpreters: Mapped[list[str]] = mapped_column(default=list)
    facts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    credential_hash: Mapped[str | None] = mapped_column(String(64))
    # SHA-256 of the public key its certificate was issued for (ns.authority.key_id):
    # re-enrolling this computer needs the same key, or an admin's 'computer reset'.
    key_id: Mapped[str | None] = mapped_column(String(64))
    # Set by an admin's 'computer reset' (which also drops the credential and key): the
    # next enrolment claiming this hardware id is accepted without proof, once, and
    # clears it. Otherwise a claim needs proof of the identity (ns.identity.proves).
    reset_at: Mapped[float | None] = mapped_column(Float)
    enrolled_at: Mapped[float] = mapped_column(Float)
    last_contact: Mapped[float | None] = mapped_column(Float)
    # Assigned task server; NULL while unassigned or when the NS serves it (see assign_step).
    # Not a foreign key: task_server already points at computer, and a cycle
    # would make table creation order ambiguous. Kept consistent by the NS.
    task_server_id: Mapped[int | None] = mapped_column(Integer, index=True)
    assign_step: Mapped[str | None] = mapped_column(String(32))
    assign_reason: Mapped[str | None] = mapped_column(Text)
    assigned_at: Mapped[float | None] = mapped_column(Float)
    # The last inventory's measurements (uptime, disk and memory free: ns.inventory),
    # apart from ``facts`` because they change at every report and no rule reads them;
    # and when the last inventory arrived (migration 0013).
    inventory: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    inventory_at: Mapped[float | None] = mapped_column(Float)


class TaskServer(Base):
    __tablename__ = "task_server"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    computer_id: Mapped[int] = mapped_column(ForeignKey("computer.id"), unique=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    url: Mapped[str] = mapped_column(String(1024))
    # pending -> approved -> revoked -> approved ... (R1)
    approval: Mapped[str] = mapped_column(String(16), default="pending")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    credential_hash: Mapped[str] = mapped_column(String(64))
    # Its certificate request, kept from registration: approval signs it (R1), and it
    # is signed again to renew. key_id names the key; a registration claiming this
    # task server must hold it.
    csr: Mapped[str | None] = mapped_column(Text)
    key_id: Mapped[str | None] = mapped_column(String(64))
    # In effect: the admin's setting where there is one, else what the task server
    # reports (``registry.apply_settings`` keeps them so; every reader uses these two).
    client_limit: Mapped[int] = mapped_column(Integer, default=5000)
    heartbeat_period_s: Mapped[float] = mapped_column(Float, default=10.0)
    # What the task server says (its --client-limit and --heartbeat), at registration
    # and in every heartbeat, so a restart with new values takes effect.
    reported_client_limit: Mapped[int] = mapped_column(Integer, default=5000, server_default="5000")
    reported_heartbeat_period_s: Mapped[float] = mapped_column(
        Float, default=10.0, server_default="10"
    )
    # Set by an admin ('taskfleet taskserver set'): wins over the reported value until cleared.
    admin_client_limit: Mapped[int | None] = mapped_column(Integer)
    admin_heartbeat_period_s: Mapped[float | None] = mapped_column(Float)
    # Computers assigned to it. Changed only by ``ns.assignment``, in the transaction that
    # changes Computer.task_server_id, by a conditional UPDATE: that is what makes the
    # client limit hold when many agents are assigned at once (R3).
    assigned_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Notification channels its open-files limit allows, from its heartbeat; the R7
    # advice warns when the client limit is above it. None: not reported (yet).
    channel_capacity: Mapped[int | None] = mapped_column(Integer)
    # Status events it set aside in its dead-letter file (the NS rejected them), and why
    # the latest was, from its heartbeat (R12): the console and CLI show them.
    dead_letters: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    dead_letter_reason: Mapped[str | None] = mapped_column(String(500))
    last_heartbeat: Mapped[float | None] = mapped_column(Float)
    registered_at: Mapped[float] = mapped_column(Float)


class Site(Base):
    __tablename__ = "site"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    subnets: Mapped[list[str]] = mapped_column(default=list)


class TaskServerSite(Base):
    """Sites a task server serves explicitly (besides the sites its own address is in)."""

    __tablename__ = "task_server_site"

    task_server_id: Mapped[int] = mapped_column(
        ForeignKey("task_server.id", ondelete="CASCADE"), primary_key=True
    )
    site_id: Mapped[int] = mapped_column(
        ForeignKey("site.id", ondelete="CASCADE"), primary_key=True
    )


class Collection(Base):
    __tablename__ = "collection"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    # Dynamic rules: {"name_pattern": "web-*", "cidr": [...], "os": "...", "fact": {k: v},
    #                 "include": [collection names], "exclude": [collection names]}
    rules: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[float] = mapped_column(Float)


class CollectionMember(Base):
    __tablename__ = "collection_member"

    collection_id: Mapped[int] = mapped_column(
        ForeignKey("collection.id", ondelete="CASCADE"), primary_key=True
    )
    computer_id: Mapped[int] = mapped_column(
        ForeignKey("computer.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class CollectionMembership(Base):
    """Every computer in every collection, whatever made it a member (a rule, a static
    membership, an include, a built-in): the stored result of ``ns/rules.py``, kept by
    ``ns/membership.py`` in the transaction of each change, so runs, assignment and task
    servers read membership with one indexed query instead of evaluating rules."""

    __tablename__ = "collection_membership"

    collection_id: Mapped[int] = mapped_column(
        ForeignKey("collection.id", ondelete="CASCADE"), primary_key=True
    )
    computer_id: Mapped[int] = mapped_column(
        ForeignKey("computer.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class EnrolmentToken(Base):
    __tablename__ = "enrolment_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # agent | taskserver
    label: Mapped[str] = mapped_column(String(255), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float | None] = mapped_column(Float)
    uses_left: Mapped[int | None] = mapped_column(Integer)  # None: unlimited
    created_by: Mapped[str] = mapped_column(String(255), default="")
    # Revoked by an admin ('taskfleet token revoke'): refused from then on.
    revoked_at: Mapped[float | None] = mapped_column(Float)
    revoked_by: Mapped[str | None] = mapped_column(String(255))


class ApiUser(Base):
    """A person: an API credential (CLI, REST) and, once set, a console password."""

    __tablename__ = "api_user"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    role: Mapped[str] = mapped_column(String(16), default="admin")
    credential_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # "scrypt$N$r$p$salt$hash" (base64); None: this user cannot log in to the console.
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    last_login: Mapped[float | None] = mapped_column(Float, default=None)


class ConsoleSession(Base):
    """A logged-in browser. The cookie holds the token; only its hash is stored."""

    __tablename__ = "console_session"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("api_user.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)


class Draft(Base):
    """The draft of a policy-like document (R9): ``policy`` or ``agent-config``."""

    __tablename__ = "draft"

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    document: Mapped[dict[str, Any]] = mapped_column()
    updated_at: Mapped[float] = mapped_column(Float)
    updated_by: Mapped[str] = mapped_column(String(255), default="")


class AppliedVersion(Base):
    __tablename__ = "applied_version"
    __table_args__ = (UniqueConstraint("kind", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column()
    applied_at: Mapped[float] = mapped_column(Float)
    applied_by: Mapped[str] = mapped_column(String(255), default="")


class Task(Base):
    __tablename__ = "task"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    timeout_s: Mapped[float] = mapped_column(Float, default=600.0)
    # The agent runs a failed script again up to ``retries`` times, waiting
    # retry_backoff_s, then twice that, ..., all inside the timeout (agent.retries).
    retries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    retry_backoff_s: Mapped[float] = mapped_column(Float, default=10.0, server_default="10")
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(255), default="")


class Job(Base):
    """Ordered steps of tasks or jobs, each with its conditions (ns.jobs, protocol.jobs)."""

    __tablename__ = "job"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # client | server
    # [{"task": id} | {"job": id}, "on_success": ..., "on_failure": ..., "on_code": {...}]
    steps: Mapped[list[Any]] = mapped_column(default=list)
    timeout_s: Mapped[float] = mapped_column(Float, default=3600.0)
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(255), default="")


class Run(Base):
    __tablename__ = "run"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # A run executes a task, or a job (migration 0015): then ``task_id`` is NULL,
    # ``job_id`` names the job (kept if the job is removed, so not a foreign key) and
    # ``plan`` is the job as it was when the run started (ns.job_plans).
    task_id: Mapped[int | None] = mapped_column(ForeignKey("task.id"))
    job_id: Mapped[int | None] = mapped_column(Integer)
    plan: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # A server job's step runs name the job run and the step (ns.server_jobs; 0016).
    parent_run_id: Mapped[int | None] = mapped_column(Integer, index=True)
    step: Mapped[int | None] = mapped_column(Integer)
    targets: Mapped[list[str]] = mapped_column(default=list)
    live: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(255), default="")
    # The values of the task's declared parameters (ns.parameters), name -> text; secret
    # ones only in sealed_params, encrypted with the NS's key (ns.secrets). Migration 0009.
    params: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    sealed_params: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    # Exclusions as given (ns.targets); the instances are the computers it resolved to.
    exclude: Mapped[list[str]] = mapped_column(default=list, server_default="[]")
    # Deliver even to computers outside their maintenance windows (ns.windows).
    ignore_windows: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # Completion requirements (ns.completion) and which one ended the run, and when;
    # ended_at is NULL while the run is open (the completion duty looks only at those).
    requirements: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    ended_by: Mapped[str | None] = mapped_column(String(32))
    ended_at: Mapped[float | None] = mapped_column(Float, index=True)
    # Fired by a schedule (ns.schedules): its id (kept after the schedule is removed, so
    # not a foreign key), the occurrence, and how many missed occurrences it stands for.
    # Unique together: one occurrence makes at most one run, whatever fires it.
    schedule_id: Mapped[int | None] = mapped_column(Integer)
    scheduled_for: Mapped[float | None] = mapped_column(Float)
    coalesced: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Instances no agent received by then end Expired (ns.expiry); migration 0010.
    expires_at: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (UniqueConstraint("schedule_id", "scheduled_for"),)


class Schedule(Base):
    """A run to start at a time (``at``) or on a cron expression in a time zone.

    ``next_fire_at`` is the next occurrence (NULL once a one-off fired): the schedule
    duty claims due rows with FOR UPDATE SKIP LOCKED and advances it in the transaction
    that creates the run (docs/work-model.md, "Schedules")."""

    __tablename__ = "schedule"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("task.id", ondelete="CASCADE"))
    # Or a job (migration 0017): kept if the job is removed, so not a foreign key.
    job_id: Mapped[int | None] = mapped_column(Integer)
    targets: Mapped[list[str]] = mapped_column(default=list)
    exclude: Mapped[list[str]] = mapped_column(default=list)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    live: Mapped[bool] = mapped_column(Boolean, default=False)
    ignore_windows: Mapped[bool] = mapped_column(Boolean, default=False)
    requirements: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Further run settings passed to start_run as they are (e.g. the run's expiry).
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[float | None] = mapped_column(Float)
    cron: Mapped[str | None] = mapped_column(String(255))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    next_fire_at: Mapped[float | None] = mapped_column(Float, index=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    fired_count: Mapped[int] = mapped_column(Integer, default=0)
    last_fired_at: Mapped[float | None] = mapped_column(Float)
    last_run_id: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(255), default="")


class MaintenanceWindow(Base):
    """A weekly window of a collection: from a weekday and time to a weekday and time,
    wall-clock in ``timezone``. Days count from Monday = 0; times are seconds of the day."""

    __tablename__ = "maintenance_window"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(
        ForeignKey("collection.id", ondelete="CASCADE"), index=True
    )
    start_day: Mapped[int] = mapped_column(Integer)
    start_s: Mapped[int] = mapped_column(Integer)
    end_day: Mapped[int] = mapped_column(Integer)
    end_s: Mapped[int] = mapped_column(Integer)
    timezone: Mapped[str] = mapped_column(String(64))


class Instance(Base):
    __tablename__ = "instance"
    __table_args__ = (
        Index("ix_instance_computer_state", "computer_id", "state"),
        UniqueConstraint("run_id", "computer_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), index=True)
    computer_id: Mapped[int] = mapped_column(ForeignKey("computer.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16), default="Pending")
    return_code: Mapped[int | None] = mapped_column(Integer)
    output: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[float | None] = mapped_column(Float)
    received_at: Mapped[float | None] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    status_count: Mapped[int] = mapped_column(Integer, default=0)
    # Why it ended as it did, when the NS ended it or the agent said (migration 0010):
    # expired, past its deadline (ns.expiry), canceled (ns.cancel), agent restarted.
    reason: Mapped[str | None] = mapped_column(String(500))
    # A cancel asked while a task server or agent may hold the instance, and when the
    # stop notice last went to its task server (ns.cancel).
    cancel_at: Mapped[float | None] = mapped_column(Float, index=True)
    cancel_sent_at: Mapped[float | None] = mapped_column(Float)


class StatusSeen(Base):
    """Ids of status events already applied: resends are recognised and ignored (R8)."""

    __tablename__ = "status_seen"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    instance_id: Mapped[int] = mapped_column(Integer, index=True)
    received_at: Mapped[float] = mapped_column(Float)
    via_task_server_id: Mapped[int | None] = mapped_column(Integer)


class AssignmentRecord(Base):
    """Every assignment decision (R3): which step chose which task server, and why."""

    __tablename__ = "assignment_record"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    computer_id: Mapped[int] = mapped_column(
        ForeignKey("computer.id", ondelete="CASCADE"), index=True
    )
    task_server_id: Mapped[int | None] = mapped_column(Integer)
    step: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[float] = mapped_column(Float)


class AuditEntry(Base):
    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[float] = mapped_column(Float, index=True)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Certificate(Base):
    """Every certificate the NS's CA signed, and its revocation (the CRL is made from these).

    Serials are random 159-bit numbers (RFC 5280): stored as decimal text."""

    __tablename__ = "certificate"

    serial: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # agent | taskserver
    principal: Mapped[int] = mapped_column(Integer)
    issued_at: Mapped[float] = mapped_column(Float)
    not_after: Mapped[float] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float, index=True)
    reason: Mapped[str] = mapped_column(String(255), default="")
    pem: Mapped[str] = mapped_column(Text, default="")  # the chain, as sent to the node

    __table_args__ = (Index("ix_certificate_principal", "kind", "principal"),)


# --- run history (migration 0012): what run-list filters on, and what retention prunes.


class RunTarget(Base):
    """One target of a run as given (a collection or computer name, ``collection:`` and
    ``computer:`` prefixes as typed): ``run-list --target`` finds runs by it, indexed."""

    __tablename__ = "run_target"

    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)

    __table_args__ = (Index("ix_run_target_name", "name", "run_id"),)


# Filters of run-list, newest first (ns.run_queries), and the retention duty's cut-offs
# (ns.retention): declared here to keep the history indexes in one place.
Index("ix_run_created_at", Run.created_at)
Index("ix_run_task_created", Run.task_id, Run.id)
Index("ix_run_job_created", Run.job_id, Run.id)
Index("ix_instance_state_run", Instance.state, Instance.run_id)
Index("ix_status_seen_received_at", StatusSeen.received_at)


# --- files for copy-file tasks (migration 0013, ns.files) ---------------------------


class StoredFile(Base):
    """A file uploaded to the NS for copy-file tasks, addressed by its SHA-256.

    Its content lives in the database (``FileChunk``), not in an NS's data directory:
    NS replicas share one PostgreSQL, and a file uploaded through one must be served
    by every other (docs/work-model.md, "Copy file")."""

    __tablename__ = "stored_file"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(255), default="")


class FileChunk(Base):
    """One piece of a stored file, in order: read and written a chunk at a time, so no
    process holds a whole file in memory."""

    __tablename__ = "file_chunk"

    file_id: Mapped[int] = mapped_column(
        ForeignKey("stored_file.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


# --- client jobs' step records (migration 0018, ns.instance_steps) --------------------


class InstanceStep(Base):
    """One step a client job ran on its computer, as the agent reported it with the
    instance's final status (protocol.step_records): the instance's structured view of
    what its text output shows under each step's header. Goes with its instance."""

    __tablename__ = "instance_step"

    instance_id: Mapped[int] = mapped_column(
        ForeignKey("instance.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)  # the order it ran in, from 1
    path: Mapped[str] = mapped_column(String(64))  # "2", "2.1": a nested job's step
    name: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16))
    return_code: Mapped[int | None] = mapped_column(Integer)
    output: Mapped[str] = mapped_column(Text, default="")
