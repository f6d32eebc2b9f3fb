"""Run an ASGI app on uvicorn (uvloop + httptools), the server the poll benchmark chose."""

from __future__ import annotations

import logging
import signal
from typing import Any

import uvicorn

from taskfleet.errors import InvalidInput


def parse_bind(bind: str) -> tuple[str, int]:
    host, sep, port = bind.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"--bind {bind!r} must be HOST:PORT, e.g. 127.0.0.1:8400")
    return host.strip("[]"), int(port)


def run(app: Any, bind: str, log_level: str = "warning") -> None:
    host, port = parse_bind(bind)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_level=log_level,
        access_log=False,
        timeout_keep_alive=75,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    # uvicorn handles SIGINT/SIGTERM itself; SIGHUP should stop too when a terminal closes.
    signal.signal(signal.SIGHUP, lambda *_: setattr(server, "should_exit", True))
    server.run()
