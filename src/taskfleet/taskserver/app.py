"""The task server's ASGI application: the agent endpoints over a ``Relay``."""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request, Response

from taskfleet import __version__
from taskfleet.agent_endpoints import api as agent_api
from taskfleet.agent_endpoints import files as agent_files
from taskfleet.agent_endpoints.channels import UNLIMITED, ChannelGate
from taskfleet.protocol.messages import STATUS_BODY_BYTES
from taskfleet.server import errors
from taskfleet.server.limits import BodyLimit
from taskfleet.server.metrics import count_requests
from taskfleet.server.serve import on_stop
from taskfleet.taskserver.metrics import TaskServerMetrics
from taskfleet.taskserver.ns_link import NSLink
from taskfleet.taskserver.relay import Relay
from taskfleet.taskserver.settings import TaskServerSettings

log = logging.getLogger("taskfleet.taskserver")


def create_app(settings: TaskServerSettings, tls: ssl.SSLContext | None = None) -> FastAPI:
    """The task server app; ``tls`` is the context it serves agents with, into which the
    certificate approval brings is loaded (None: plain HTTP, --insecure-http)."""
    gate = ChannelGate()  # sized by server.serve from the open-files limit
    metrics = TaskServerMetrics()  # this app's own registry, exported on /metrics

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Reported in every heartbeat: the R7 advice compares it with the client limit.
        settings.channel_capacity = gate.capacity if gate.capacity < UNLIMITED else None
        if settings.client_limit > gate.capacity:
            log.warning(
                "client limit %d is more than the %d notification channels the open-files "
                "limit allows: raise the limit (ulimit -n, LimitNOFILE=) or lower "
                "--client-limit",
                settings.client_limit,
                gate.capacity,
            )
        relay = Relay(settings, NSLink(settings, metrics, server_tls=tls))
        metrics.watch_relay(relay, settings)
        await relay.start()
        app.state.work_source = relay
        app.state.file_source = relay.files  # copy-file tasks' files (agent_endpoints.files)
        print(
            f"taskfleet: task server {relay.link.name} ({relay.approval}) "
            f"listening on {settings.url}",
            flush=True,
        )
        try:
            yield
        finally:
            await relay.stop()

    app = FastAPI(
        title="taskfleet task server",
        version=__version__,
        lifespan=lifespan,
        # FastAPI's OpenTelemetry hooks ask the tracer and meter providers on every
        # request (6 % of a task server's CPU under a herd); we export /metrics instead.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.channels = gate
    app.state.metrics = metrics

    async def answer_channels() -> None:
        gate.stop(app.state.work_source.tickler)

    on_stop(app, answer_channels)
    errors.install(app)
    app.include_router(agent_api.router)
    app.include_router(agent_files.router)

    async def export_metrics(request: Request) -> Response:
        # Open, like /hello: aggregate numbers only, and no users here to check (README).
        return metrics.response(request)

    app.add_route("/metrics", export_metrics, methods=["GET"], include_in_schema=False)
    larger = {"/agent/status": STATUS_BODY_BYTES}  # one event may hold a whole output
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, larger=larger)
    count_requests(app, metrics)  # last: the outermost middleware, so 413s count too
    return app
