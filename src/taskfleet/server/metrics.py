"""Prometheus metrics both servers export on ``/metrics``: requests by route and code, and the
status events they take from agents. ``taskserver.metrics`` and ``ns.metrics`` add their own.

Each app holds its own ``CollectorRegistry`` (``ServerMetrics.registry``), never the
process-wide default: the NS and a task server each export only their own figures, and
tests that create several apps in one process do not collide.

Requests are counted by ``RequestMetrics``, an ASGI middleware, by method, route
*template* (``/api/runs/{run_id}``, never a raw path: ids would make a series per row)
and status code. The task server's hot paths (poll, channel, status) go through it, so
the count is a plain int in a dict (``ServerMetrics.request_counts``), exported as a
counter at scrape time: about 1 us a request in all (the app under it takes 17 us
before the HTTP server's share), where a prometheus-client counter child's ``inc`` alone
takes 0.4 us (a lock). A request no route took (404, or refused before routing, such as
a 413 on its declared length) counts as route ``other``. The NS also times every request
(a histogram per route, ``durations=True``); the task server does not, as most of its
requests are long polls whose duration is their wait.

Figures that are state (open channels, spool depth, rows by state) are read when
Prometheus scrapes (``watch``), not updated on every change.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, Metric
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
STARTED = "taskfleet.started"  # scope key: when the request arrived (perf_counter)


class ServerMetrics:
    """The registry of one app and the metrics every taskfleet server has."""

    def __init__(self, prefix: str, durations: bool) -> None:
        self.prefix = prefix
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # CPU, memory, open files of this process
        PlatformCollector(registry=self.registry)
        # (route template, method, status) -> requests answered. Changed and read on the
        # event loop's thread only (the middleware, the /metrics endpoint): no lock.
        self.request_counts: dict[tuple[str, str, int], int] = {}
        self.watch(self._requests)
        # (route template, method) -> the histogram's child, looked up once: labels()
        # takes a lock and checks its arguments, a dict lookup does neither.
        self._timers: dict[tuple[str, str], Any] = {}
        self.durations = (
            Histogram(
                f"{prefix}_request_duration_seconds",
                "Time from a request's arrival to its response's start, by method and route "
                "template",
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

    def count(self, scope: Scope, status: int) -> None:
        """One request answered with ``status``."""
        method = scope["method"]
        if method not in METHODS:  # a client's invented method is not a new series
            method = OTHER
        route = route_template(scope)
        key = (route, method, status)
        self.request_counts[key] = self.request_counts.get(key, 0) + 1
        if self.durations is not None and STARTED in scope:
            timer = self._timers.get((route, method))
            if timer is None:
                timer = self._timers[(route, method)] = self.durations.labels(method, route)
            timer.observe(time.perf_counter() - scope[STARTED])

    def _requests(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            f"{self.prefix}_requests",
            "HTTP requests answered, by method, route template and status code",
            labels=["method", "route", "code"],
        )
        for (route, method, status), count in sorted(self.request_counts.items()):
            family.add_metric([method, route, str(status)], count)
        return [family]

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

    Added last (outermost, ``count_requests``), so it also counts what other middleware
    answers (413). A request is counted when its response starts: the router has chosen
    its route by then. ``__call__`` is not a coroutine: a notification channel parks for
    minutes, and this way no frame of the middleware waits in its chain, only a
    ``_Counted`` (about 100 bytes; an ``async`` wrapper with a closure held 0.5 KiB more
    per open channel).
    """

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        if self.metrics.durations is not None:
            scope[STARTED] = time.perf_counter()
        return self.app(scope, receive, _Counted(self.metrics, scope, send).send)


class _Counted:
    __slots__ = ("_metrics", "_scope", "_send")

    def __init__(self, metrics: ServerMetrics, scope: Scope, send: Send) -> None:
        self._metrics = metrics
        self._scope = scope
        self._send = send

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._metrics.count(self._scope, message["status"])
        await self._send(message)


def count_requests(app: Any, metrics: ServerMetrics) -> None:
    """Count every request of ``app``: call last, after ``server.errors.install`` and the
    other middleware. A request that fails with an unexpected error is answered 500 by
    the outermost layer, past this middleware: its handler counts it instead."""
    app.add_middleware(RequestMetrics, metrics=metrics)
    unexpected = app.exception_handlers.get(Exception)
    if unexpected is None:
        return

    async def counted(request: Request, exc: Exception) -> Response:
        # Called only when no response has started, so never counted twice.
        metrics.count(request.scope, 500)
        response: Response = await unexpected(request, exc)
        return response

    app.exception_handlers[Exception] = counted


def route_template(scope: Scope) -> str:
    """The template of the route the router chose for this request, or ``OTHER``.

    Read when the response starts, from what the router left in the scope: FastAPI's
    routes put themselves in ``route``; a plain Starlette route in an APIRouter leaves only
    its ``endpoint``, and then, having no path parameters, the path is its template; a
    mount leaves its prefix in ``root_path``. Whatever else (a 404, a request refused
    before routing) is ``OTHER``, so no raw path with an id in it becomes a label.
    """
    route = scope.get("route")
    if route is not None:
        # The template without converters: '/api/taskservers/{key}', not '{key:path}'.
        return str(getattr(route, "path_format", route.path))
    if "endpoint" not in scope:
        return OTHER
    if "app_root_path" in scope:  # a mount (static files): its prefix, then the rest
        return f"{scope.get('root_path', '')}/{{path}}"
    if not scope.get("path_params"):  # an exact route matches its template only
        return str(scope["path"])
    return OTHER
