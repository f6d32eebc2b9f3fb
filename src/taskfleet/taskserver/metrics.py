"""What a task server exports on ``/metrics`` (Prometheus), besides requests by route and code.

Counted as it happens, by the relay's loops and its NS link (none on the agents' hot
paths, which the request middleware already counts):

- work fetched from the NS: fetches, their latency and size in instances, and the run
  tasks they carried (each run's task travels once per task server);
- status relayed to the NS: batches, their latency and size; events set aside in the
  dead-letter file (``dead_letters``: the NS rejected them, or they failed this task
  server's own field checks), so they cannot block the spool (R12);
- calls to the NS that failed, by call and error.

Read when Prometheus scrapes (``watch_relay``): open notification channels and the channel
capacity (the figure the heartbeat reports to the NS for the R7 advice), the client
limit, agents known, work held for agents, spool depth, dead letters kept, approval.

``/metrics`` is open, like ``/hello``: a task server has no users to check a credential
against, and it exports only aggregate numbers (no computer, run or agent is named).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import Counter, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from taskfleet.errors import TaskfleetError
from taskfleet.protocol.messages import Approval, StatusAck, WorkBatch
from taskfleet.server.metrics import BATCH_BUCKETS, LATENCY_BUCKETS, ServerMetrics

if TYPE_CHECKING:
    from taskfleet.taskserver.relay import Relay
    from taskfleet.taskserver.settings import TaskServerSettings

PREFIX = "taskfleet_ts"
CALLS = frozenset({"register", "heartbeat", "events", "agents", "work", "status"})
# Approval's states, and the task server's own: before its first heartbeat, and disabled.
APPROVALS = ("unknown", *(a.value for a in Approval), "disabled")


class TaskServerMetrics(ServerMetrics):
    def __init__(self) -> None:
        super().__init__(PREFIX, durations=False)
        r = self.registry
        self.work_fetch_seconds = Histogram(
            f"{PREFIX}_work_fetch_seconds",
            "Work fetches from the NS (POST /api/ts/work): seconds per call",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.work_fetch_instances = Histogram(
            f"{PREFIX}_work_fetch_instances",
            "Work fetches from the NS: instances (one computer's work each) per call",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.run_tasks = Counter(
            f"{PREFIX}_run_tasks_received",
            "Run tasks received with work fetches: each run's task once per task server",
            registry=r,
        )
        self.relay_seconds = Histogram(
            f"{PREFIX}_status_relay_seconds",
            "Status batches relayed to the NS (POST /api/ts/status): seconds per call",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.relay_events = Histogram(
            f"{PREFIX}_status_relay_events",
            "Status batches relayed to the NS: events per batch",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.dead_letters = Counter(
            f"{PREFIX}_dead_letters",
            "Status events set aside in the dead-letter file (the NS rejected them, or they "
            "failed this task server's field checks): out of the spool, so they cannot block it",
            registry=r,
        )
        self.link_errors = Counter(
            f"{PREFIX}_ns_link_errors",
            "Calls to the NS that failed, by call and error code (unavailable: no answer)",
            ["call", "error"],
            registry=r,
        )

    def fetched(self, batch: WorkBatch, seconds: float) -> None:
        self.work_fetch_seconds.observe(seconds)
        self.work_fetch_instances.observe(len(batch.work))
        self.run_tasks.inc(len(batch.runs))

    def relayed(self, events: int, ack: StatusAck, seconds: float) -> None:
        self.relay_seconds.observe(seconds)
        self.relay_events.observe(events)

    def link_error(self, path: str, error: TaskfleetError) -> None:
        """A call to ``path`` (``/api/ts/<call>...``) failed with ``error``."""
        parts = path.split("/")
        call = parts[3] if len(parts) > 3 and parts[3] in CALLS else "other"
        self.link_errors.labels(call, error.code).inc()

    def watch_relay(self, relay: Relay, settings: TaskServerSettings) -> None:
        def collect() -> Iterator[Metric]:
            yield _gauge(
                "open_channels",
                "Notification channels open now (agents waiting for a tickle)",
                relay.tickler.open_channels,
            )
            if settings.channel_capacity is not None:
                yield _gauge(
                    "channel_capacity",
                    "Notification channels the open-files limit allows; the heartbeat reports "
                    "it to the NS, whose R7 advice compares it with the client limit",
                    settings.channel_capacity,
                )
            yield _gauge(
                "client_limit",
                "Agents this task server accepts (--client-limit)",
                settings.client_limit,
            )
            yield _gauge("agents", "Agents the NS assigned to this task server", len(relay.agents))
            yield _gauge(
                "work_waiting",
                "Instances fetched from the NS and held until their agent reports on them",
                relay.work.waiting,
            )
            yield _gauge(
                "spool_events",
                "Status events on disk not yet acknowledged by the NS",
                len(relay.spool),
            )
            yield _gauge(
                "dead_letters_kept",
                "Status events in the dead-letter file now (bounded: the oldest go first)",
                relay.dead_letters.count,
            )
            approval = GaugeMetricFamily(
                f"{PREFIX}_approval",
                "1 for this task server's approval state (R1)",
                labels=["state"],
            )
            for state in sorted({*APPROVALS, relay.approval}):
                approval.add_metric([state], 1.0 if state == relay.approval else 0.0)
            yield approval

        self.watch(collect)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, value=value)
