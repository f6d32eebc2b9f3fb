"""The task server's ASGI application: the agent endpoints over a ``Relay``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from taskfleet import __version__
from taskfleet.server import errors
from taskfleet.server.limits import BodyLimit
from taskfleet.taskserver import agent_api
from taskfleet.taskserver.ns_link import NSLink
from taskfleet.taskserver.relay import Relay
from taskfleet.taskserver.settings import TaskServerSettings


def create_app(settings: TaskServerSettings) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        relay = Relay(settings, NSLink(settings))
        await relay.start()
        app.state.work_source = relay
        print(
            f"taskfleet: task server {relay.link.name} ({relay.approval}) "
            f"listening on {settings.url}",
            flush=True,
        )
        try:
            yield
        finally:
            await relay.stop()

    app = FastAPI(title="taskfleet task server", version=__version__, lifespan=lifespan)
    errors.install(app)
    app.include_router(agent_api.router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app
