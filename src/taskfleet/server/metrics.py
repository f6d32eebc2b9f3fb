"""Prometheus metrics both servers export on ``/metrics``: requests by route and code, and the
status events they take from agents. ``taskserver.metrics`` and ``ns.metrics`` add their own.

Each app holds its own ``CollectorRegistry`` (``ServerMetrics.registry``), never the
process-wide default: the NS and a task server each export only their own figures, and
tests that create several apps in one process do not collide.

Requests are counted by ``RequestMetrics``, an ASGI middleware, by method, route
*template* (``/api/runs/{run_id}``, never a raw path: ids would make a series per row)
and status code. The task server's hot paths (poll, channel, status) go through it, so
per request it costs one dict lookup and one counter increment: the counter's child for
each (route, method, code) is looked up once and kept. A request no route took (404, or
refused before routing, such as a 413 on its declared length) counts as route ``other``.
The NS also times every request (a histogram per route, ``durations=True``); the task
server does not, as most of its requests are long polls whose duration is their wait.

Figures that are state (open channels, spool depth, rows by state) are read when
Prometheus scrapes (``watch``), not updated on every change.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskfleet.protocol.messages import StatusAck

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"
# Seconds: from a fast answer from memory to a long database transaction.
LATENCY_BUCKETS = (0.001, 0.005, 0.025, 0.1, 0.25, 1.0, 2.5, 10.0, 30.0, 120.0)
# Items per batch (instances, status events): one agent's, up to the largest batch.
BATCH_BUCKETS = (1, 10, 100, 500, 1000, 2000, 5000, 10000)


class ServerMetrics:
    """The registry of one app and the metrics every taskfleet server has."""

    def __init__(self, prefix: str, durations: bool) -> None:
        self.prefix = prefix
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # CPU, memory, open files of this process
        PlatformCollector(registry=self.registry)
        self.requests = Counter(
            f"{prefix}_requests",
            "HTTP requests answered, by method, route template and status code",
            ["method", "route", "code"],
            registry=self.registry,
        )
        self.durations = (
            Histogram(
                f"{prefix}_request_duration_seconds",
                "Time to answer an HTTP request, by method and route template",
                ["method", "route"],
                buckets=LATENCY_BUCKETS,
                registry=self.registry,
            )
            if durations
            else None
        )
        self.status_events = Counter(
            f"{prefix}_status_events",
            "Status events taken in, by where they came from (agent: its own POST "
            "/agent/status; task_server: a relayed batch) and whether they were accepted",
            ["source", "result"],
            registry=self.registry,
        )
        self._from_agents = self.status_events.labels("agent", "accepted")
        self._refused_from_agents = self.status_events.labels("agent", "rejected")

    def agent_reported(self, ack: StatusAck) -> None:
        """An agent's status batch was taken (POST /agent/status)."""
        self._from_agents.inc(len(ack.accepted))
        if ack.rejected:
            self._refused_from_agents.inc(len(ack.rejected))

    def watch(self, collect: Callable[[], Iterable[Metric]]) -> None:
        """Export what ``collect`` reads, each time Prometheus scrapes."""
        self.registry.register(_Collector(collect))

    def response(self, request: Request) -> Response:
        """The registry in the format the scraper asked for (Prometheus text or OpenMetrics)."""
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encode(self.registry), headers={"Content-Type": content_type})


class _Collector:
    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Metric]:
        return self._collect()


class RequestMetrics:
    """ASGI middleware: count every HTTP request by method, route template and status code.

    Added last (outermost), so it also counts what other middleware answers (413)."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics
        # (route template, method, status) -> (the counter's child, the histogram's):
        # labels() takes a lock and checks its arguments; a dict lookup does neither.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets when the app raises before it answers
        started = time.perf_counter()

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            method = scope["method"]
            if method not in METHODS:  # a client's invented method is not a new series
                method = OTHER
            key = (route_template(scope), method, status)
            children = self._children.get(key)
            if children is None:
                children = self._children[key] = self._labels(*key)
            children[0].inc()
            if children[1] is not None:
                children[1].observe(time.perf_counter() - started)

    def _labels(self, template: str, method: str, status: int) -> tuple[Any, Any]:
        durations = self.metrics.durations
        return (
            self.metrics.requests.labels(method, template, str(status)),
            durations.labels(method, template) if durations is not None else None,
        )


def route_template(scope: Scope) -> str:
    """The template of the route the router chose for this request, or ``OTHER``.

    Read after the app answered, from what the router left in the scope: FastAPI's
    routes put themselves in ``route``; a plain Starlette route in an APIRouter leaves only
    its ``endpoint``, and then, having no path parameters, the path is its template; a
    mount leaves its prefix in ``root_path``. Whatever else (a 404, a request refused
    before routing) is ``OTHER``, so no raw path with an id in it becomes a label.
    """
    route = scope.get("route")
    if route is not None:
        return str(route.path)
    if "endpoint" not in scope:
        return OTHER
    if "app_root_path" in scope:  # a mount (static files): its prefix, then the rest
        return f"{scope.get('root_path', '')}/{{path}}"
    if not scope.get("path_params"):  # an exact route matches its template only
        return str(scope["path"])
    return OTHER
