"""The notification server's ASGI application: the composition root of the NS process.

It puts together what the packages provide and imports nothing back: the NS's API and
services (``taskfleet.ns``), the agent endpoints it serves as the last fallback of R3
(``taskfleet.agent_endpoints``, shared with the task server) and the console
(``taskfleet.console``, pages over the NS services). ``console`` imports ``ns``,
never the reverse; ``tests/test_import_graph.py`` holds the package edges.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator

from fastapi import FastAPI

from taskfleet import __version__
from taskfleet.agent_endpoints import api as agent_api
from taskfleet.agent_endpoints import files as agent_files
from taskfleet.agent_endpoints.channels import ChannelGate
from taskfleet.console.app import install as install_console
from taskfleet.ns import (
    api_agent,
    api_ca,
    api_collections,
    api_files,
    api_fleet,
    api_history,
    api_identity,
    api_inventory,
    api_jobs,
    api_lifecycle,
    api_schedules,
    api_scripts,
    api_sites,
    api_task_types,
    api_taskserver,
    api_users,
    api_work,
    bootstrap,
    database_errors,
    duties,
    files,
    openapi,
    replicas,
    singleton,
    status_rows,
)
from taskfleet.ns import tls as ns_tls
from taskfleet.ns.authority import Authority
from taskfleet.ns.file_role import NSFiles
from taskfleet.ns.local_role import LocalRole
from taskfleet.ns.metrics import install as install_metrics
from taskfleet.ns.secrets import SecretBox
from taskfleet.ns.settings import NSSettings
from taskfleet.ns.state import NSState
from taskfleet.protocol.messages import STATUS_BODY_BYTES
from taskfleet.server import errors
from taskfleet.server.capacity import DEFAULT_RESERVE
from taskfleet.server.limits import BodyLimit
from taskfleet.server.serve import on_stop
from taskfleet.storage import database, migrate

log = logging.getLogger("taskfleet.ns")
# Open files besides connections: the task server's reserve plus the database pool
# (PostgreSQL: up to 30 connections; SQLite: three files per pooled connection).
OPEN_FILES_RESERVE = DEFAULT_RESERVE + 64
INSECURE_WARNING = (
    "--insecure-http: serving plain HTTP. Credentials, scripts and their output can be "
    "read and changed by anyone on the network; use it for tests only"
)


def create_app(
    settings: NSSettings, authority: Authority | None = None, tls: ssl.SSLContext | None = None
) -> FastAPI:
    """The NS app; ``authority`` is its CA (loaded or made here unless --insecure-http)
    and ``tls`` the server context it is served with (reloaded after a CA rotation)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = database.create_engine(settings.db_url)
        status_rows.stored_output_limit = settings.max_output_bytes  # --max-output
        state = NSState(settings, engine, database.sessionmaker(engine))
        state.secrets = SecretBox.load_or_create(settings.data_dir / "ca")
        if settings.insecure_http:
            log.warning(INSECURE_WARNING)
            print(f"taskfleet: WARNING: {INSECURE_WARNING}", flush=True)
        else:
            state.authority = authority or ns_tls.load(settings)[0]
            print(
                "taskfleet: CA fingerprint (give nodes --ca-fingerprint): "
                f"{state.authority.fingerprint}",
                flush=True,
            )
        # Replicas starting together (PostgreSQL) migrate and create the first admin in turn.
        async with singleton.exclusive(engine, "start"):
            await migrate.upgrade(engine)
            async with state.session() as session:
                await bootstrap.ensure_builtins(session)
                created = await bootstrap.ensure_admin(session, settings.data_dir)
        if created is not None:
            credential_file, password_file = created
            print(
                f"taskfleet: first start; admin credential written to {credential_file}\n"
                f"taskfleet: export TASKFLEET_CREDENTIAL={credential_file}\n"
                f"taskfleet: console {settings.public_url}/console/ : log in as 'admin' with the "
                f"password in {password_file}",
                flush=True,
            )
        role = LocalRole(state)
        app.state.ns = state
        app.state.tls = tls
        async with state.session() as session:
            await state.revocations.load(session)
        revocations = asyncio.create_task(state.revocations.refresh_forever(state.session))
        app.state.work_source = role
        app.state.file_source = NSFiles(state)  # copy-file tasks' files (agent_endpoints.files)
        refresher = asyncio.create_task(role.refresh_forever())
        # PostgreSQL: the hub's changes cross to the other replicas (None on SQLite).
        link = await replicas.start(state.hub, engine)
        background = duties.start(state)  # each on one replica at a time
        print(
            f"taskfleet: notification server {__version__} listening on {settings.public_url}",
            flush=True,
        )
        try:
            yield
        finally:
            await duties.stop(background)
            if link is not None:
                await link.stop()
            for task in (refresher, revocations):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await engine.dispose()

    async def end_long_polls() -> None:
        # Stopping: the agents' channels (fallback role), the task servers' events waits
        # and 'run --wait' followers all answer now rather than at the end of their wait.
        state: NSState | None = getattr(app.state, "ns", None)
        if state is not None:
            gate.stop(state.hub.local)
            await state.hub.close()

    gate = ChannelGate()  # sized by server.serve from the open-files limit
    app = FastAPI(
        title="taskfleet notification server",
        version=__version__,
        lifespan=lifespan,
        # FastAPI's OpenTelemetry hooks ask the tracer and meter providers on every
        # request (6 % of a task server's CPU under a herd); we export /metrics instead.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        description="REST API of the taskfleet notification server. Errors are "
        '`{"error": code, "message": text}`, with `"field": name` when one input is at fault.',
    )
    app.state.channels = gate
    app.state.open_files_reserve = OPEN_FILES_RESERVE
    on_stop(app, end_long_polls)
    errors.install(app)
    database_errors.install(app)  # the NS's alone: a task server has no database
    openapi.install(app)  # the error statuses each operation returns
    app.include_router(api_agent.router)
    app.include_router(api_ca.router)
    app.include_router(api_taskserver.router)
    app.include_router(api_fleet.router)
    app.include_router(api_collections.router)
    app.include_router(api_sites.router)
    app.include_router(api_identity.router)
    app.include_router(api_scripts.router)  # before api_work: POST /runs/preview
    app.include_router(api_work.router)
    app.include_router(api_lifecycle.router)  # POST /runs/{id}/cancel
    app.include_router(api_jobs.router)
    app.include_router(api_schedules.router)
    app.include_router(api_history.router)  # after api_work: /runs/{id}/output/...
    app.include_router(api_users.router)
    app.include_router(agent_api.router)
    app.include_router(agent_files.router)
    app.include_router(api_files.router)
    app.include_router(api_task_types.router)
    app.include_router(api_inventory.router)
    install_console(app)
    status_bodies = dict.fromkeys(("/api/ts/status", "/agent/status"), STATUS_BODY_BYTES)
    status_bodies["/api/files"] = files.MAX_FILE_BYTES  # an upload (ns.files)
    status_bodies["/console/files"] = files.MAX_FILE_BYTES + 64 * 1024  # a form's upload
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, larger=status_bodies)
    install_metrics(app, settings)  # last: its request counter is the outermost middleware
    return app
