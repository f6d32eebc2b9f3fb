"""What the NS exports on ``/metrics`` (Prometheus), besides requests by route and code and
their durations (``server.metrics``).

Counted as it happens, per NS process (with replicas, sum over them):

- status events ingested, by source (relayed by a task server, or an agent's own) and
  result, and the size of the batches task servers relay;
- work batches handed to task servers: instances per batch, run tasks sent;
- enrolments, and assignments by the R3 step that chose (failovers too).

Read when Prometheus scrapes: the fleet from the database (``figures``, cached; the same
on every replica, so take one replica's or ``max``, not the sum), the capacity figures
the R7 advice compares (``ts_capacity_rps``, each task server's client limit and
channel capacity), and this process's open notification channels (its agent role).

``/metrics`` takes the same credential as the rest of the API, any role: Prometheus
sends a viewer's (``taskfleet user create prometheus --role viewer``, then
``authorization: {credentials_file: ...}`` in the scrape config). The NS holds the
fleet's names and numbers behind logins everywhere else; a disabled user stops at once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import Counter, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from taskfleet.agent_endpoints.channels import UNLIMITED
from taskfleet.ns import figures
from taskfleet.ns.auth import Viewer
from taskfleet.ns.settings import NSSettings
from taskfleet.ns.state import ns_state
from taskfleet.protocol.messages import Assignment, StatusAck, WorkBatch
from taskfleet.server.metrics import BATCH_BUCKETS, ServerMetrics, count_requests

PREFIX = "taskfleet_ns"
router = APIRouter(tags=["metrics"])


class NSMetrics(ServerMetrics):
    def __init__(self, settings: NSSettings) -> None:
        super().__init__(PREFIX, durations=True)
        r = self.registry
        self.settings = settings
        self.figures = figures.FleetFigures()
        self.status_batch_events = Histogram(
            f"{PREFIX}_status_batch_events",
            "Status batches relayed by task servers (POST /api/ts/status): events per batch",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self._relayed = self.status_events.labels("task_server", "accepted")
        self._relayed_refused = self.status_events.labels("task_server", "rejected")
        self.work_batch_instances = Histogram(
            f"{PREFIX}_work_batch_instances",
            "Work batches handed to task servers (POST /api/ts/work): instances per batch",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.run_tasks_sent = Counter(
            f"{PREFIX}_run_tasks_sent",
            "Run tasks sent with work batches: each run's task once per task server",
            registry=r,
        )
        self.enrolments = Counter(f"{PREFIX}_enrolments", "Computers enrolled", registry=r)
        self.assignments = Counter(
            f"{PREFIX}_assignments",
            "Task-server assignments answered to agents, by the R3 step that chose",
            ["step"],
            registry=r,
        )
        self.failovers = Counter(
            f"{PREFIX}_failovers",
            "Assignments asked by an agent whose task server stopped answering (R4)",
            registry=r,
        )

    def relayed_status(self, events: int, ack: StatusAck) -> None:
        self.status_batch_events.observe(events)
        self._relayed.inc(len(ack.accepted))
        if ack.rejected:
            self._relayed_refused.inc(len(ack.rejected))

    def work_handed_out(self, batch: WorkBatch) -> None:
        self.work_batch_instances.observe(len(batch.work))
        self.run_tasks_sent.inc(len(batch.runs))

    def assigned(self, assignment: Assignment, failover: bool) -> None:
        self.assignments.labels(assignment.step).inc()
        if failover:
            self.failovers.inc()

    def watch_app(self, app: Any) -> None:
        """Export the fleet figures and this process's channels, read at scrape time."""

        def collect() -> Iterator[Metric]:
            yield _gauge(
                "task_server_capacity_rps",
                "Requests/s one task server core answers (ns serve --ts-capacity, measured by "
                "bench/poll.py); the R7 advice warns past half of it",
                self.settings.ts_capacity_rps,
            )
            state = getattr(app.state, "ns", None)
            if state is not None:
                yield _gauge(
                    "open_channels",
                    "Notification channels open on this NS process (agents it serves itself)",
                    state.hub.local.open_channels,
                )
            gate = app.state.channels
            if gate.capacity < UNLIMITED:
                yield _gauge(
                    "channel_capacity",
                    "Notification channels this process's open-files limit allows",
                    gate.capacity,
                )
            if self.figures.latest is not None:
                yield from _fleet(self.figures.latest)
            yield CounterMetricFamily(
                f"{PREFIX}_figures_failures",
                "Scrapes whose fleet figures the database could not give (older ones shown)",
                value=self.figures.failures,
            )

        self.watch(collect)


def _fleet(snapshot: figures.Snapshot) -> Iterator[Metric]:
    instances = GaugeMetricFamily(
        f"{PREFIX}_instances",
        "Run instances (one per computer of a run) by state",
        labels=["state"],
    )
    for state, count in snapshot.instances.items():
        instances.add_metric([state], count)
    yield instances
    runs = GaugeMetricFamily(
        f"{PREFIX}_runs", "Runs: in_progress while an instance is not finished", labels=["state"]
    )
    runs.add_metric(["in_progress"], snapshot.runs_in_progress)
    runs.add_metric(["done"], snapshot.runs - snapshot.runs_in_progress)
    yield runs
    computers = GaugeMetricFamily(
        f"{PREFIX}_computers",
        "Computers by the R3 step that assigned their task server (none: not yet)",
        labels=["step"],
    )
    for step, count in sorted(snapshot.computers.items()):
        computers.add_metric([step], count)
    yield computers
    servers = GaugeMetricFamily(
        f"{PREFIX}_task_servers", "Task servers by availability (R1, R2)", labels=["state"]
    )
    states = list(snapshot.task_servers.values())
    for state in figures.AVAILABILITY:
        servers.add_metric([state], states.count(state))
    yield servers
    per_server = {
        "available": "1 when the task server is available (approved, enabled, heartbeat fresh)",
        "assigned": "Computers assigned to the task server",
        "client_limit": "Client limit in effect for the task server (R3)",
        "channel_capacity": "Notification channels its open-files limit allows (its heartbeat)",
    }
    families = {
        key: GaugeMetricFamily(f"{PREFIX}_task_server_{key}", text, labels=["task_server"])
        for key, text in per_server.items()
    }
    for ts in snapshot.capacities:
        available = snapshot.task_servers.get(ts.name) == "available"
        families["available"].add_metric([ts.name], 1.0 if available else 0.0)
        families["assigned"].add_metric([ts.name], ts.assigned)
        families["client_limit"].add_metric([ts.name], ts.client_limit)
        if ts.channel_capacity is not None:
            families["channel_capacity"].add_metric([ts.name], ts.channel_capacity)
    yield from families.values()
    yield _gauge(
        "figures_age_seconds",
        "Age of the fleet figures above",
        max(0.0, time.time() - snapshot.taken_at),
    )
    yield _gauge("figures_query_seconds", "Time the fleet figures' queries took", snapshot.seconds)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, value=value)


def ns_metrics(request: Request) -> NSMetrics:
    metrics: NSMetrics = request.app.state.metrics
    return metrics


@router.get("/metrics", response_class=Response)
async def export(request: Request, _viewer: Viewer) -> Response:
    """Prometheus metrics of this NS process and of the fleet; any user's credential."""
    metrics = ns_metrics(request)
    await metrics.figures.refresh(ns_state(request))
    return metrics.response(request)


def install(app: Any, settings: NSSettings) -> None:
    """/metrics and the request counter on the NS app; call last, after other middleware,
    so that what they answer (413) is counted too."""
    metrics = NSMetrics(settings)
    app.state.metrics = metrics
    metrics.watch_app(app)
    app.include_router(router)
    count_requests(app, metrics)
