"""Replies of the work-model API (``ns.api_work``, ``ns.api_task_types``), for OpenAPI.

Each model lists exactly the keys the route has always returned: FastAPI validates a
reply against its model and drops keys the model lacks, so a key added to a service's
reply must be added here too (``tests/ns/test_api_shape.py`` checks that every reply
has a schema). Free-form mappings the services own (a task's params, a run's
requirements) stay ``dict[str, Any]`` fields; a document's entries are the typed
entries of ``ns.policy`` and ``ns.agent_config``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from taskfleet.ns import advice, drafts, runs, script_tasks
from taskfleet.ns.agent_config import AgentConfig, ConfigEntry
from taskfleet.ns.policy import Policy, PolicyEntry
from taskfleet.storage.models import AppliedVersion, Task

# --- policy and agent-configuration documents (ns.drafts) ---------------------------


@dataclass
class DocumentContent:
    """A document: its entries in priority order, as ``ns.drafts`` checked them."""

    entries: list[PolicyEntry] | list[ConfigEntry]  # by the document's kind


@dataclass
class AppliedDocument:
    version: int
    document: DocumentContent
    applied_at: float
    applied_by: str


@dataclass
class DocumentView:
    """A document kind: its applied version (None before the first), and its draft."""

    kind: str
    applied: AppliedDocument | None
    draft: DocumentContent  # the applied document when there is no draft
    unapplied: bool  # the draft differs from the applied document
    draft_updated_by: str | None


@dataclass
class AppliedNow:
    """The version ``apply`` just made."""

    kind: str
    version: int
    document: DocumentContent


def content(kind: str, document: dict[str, Any]) -> DocumentContent:
    """A stored document (JSON) of ``kind`` as the reply shows it."""
    if kind == drafts.POLICY:
        return DocumentContent(list(Policy.from_json(document).entries))
    return DocumentContent(list(AgentConfig.from_json(document).entries))


def applied(version: AppliedVersion) -> AppliedDocument:
    return AppliedDocument(
        version.version,
        content(version.kind, version.document),
        version.applied_at,
        version.applied_by,
    )


# --- interval advice (ns.advice, R7) ---------------------------------------------------


@dataclass
class AdviceView:
    scope: str  # "collection Lab" or "task server ts-a"
    computers: int
    task_request_interval_min: float
    send_status_interval_s: float
    warnings: list[str]
    recommended_task_request_interval_min: float | None
    recommended_send_status_interval_s: float | None
    collection: str | None  # the collection whose configuration entry to change
    ok: bool  # no warnings


def advice_view(found: advice.Advice) -> AdviceView:
    return AdviceView(**asdict(found), ok=found.ok)


# --- tasks -----------------------------------------------------------------------------


@dataclass
class TaskView:
    id: int
    name: str
    type: str  # run-script, copy-file, power-control, inventory, restart-agent
    # By type (ns.tasks, ns.task_types); a run-script task's secret defaults are masked.
    params: dict[str, Any]
    timeout_s: float
    retries: int
    retry_backoff_s: float
    builtin: bool
    created_at: float
    created_by: str


def task_view(task: Task) -> TaskView:
    return TaskView(
        task.id, task.name, task.type, script_tasks.shown(task.params), task.timeout_s,
        task.retries, task.retry_backoff_s, task.builtin, task.created_at, task.created_by,
    )  # fmt: skip


# --- runs ------------------------------------------------------------------------------


@dataclass(kw_only=True)
class RunProgress(runs.RunSummary):
    """A run's counts as ``GET /api/runs/{id}/wait`` answers: ``version`` goes back as
    ``since``."""

    version: str
