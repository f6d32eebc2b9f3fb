"""Run an ASGI app on uvicorn (uvloop + httptools) or granian.

``bench/poll.py`` measures both on the task server's hot path and
docs/benchmarks.md records which one is the default and why. Both run one
process with one event loop: a task server scales out by adding task servers,
not workers, because its agent map and tickle registry live in its memory.
"""

from __future__ import annotations

import logging
import signal
from typing import Any, Literal

from taskfleet.errors import InvalidInput

HTTPServer = Literal["uvicorn", "granian"]
HTTP_SERVERS: tuple[HTTPServer, ...] = ("uvicorn", "granian")
DEFAULT_HTTP_SERVER: HTTPServer = "uvicorn"
KEEP_ALIVE_S = 75
MAX_OPEN_REQUESTS = 100_000


def parse_bind(bind: str) -> tuple[str, int]:
    host, sep, port = bind.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"--bind {bind!r} must be HOST:PORT, e.g. 127.0.0.1:8400")
    return host.strip("[]"), int(port)


def check_http_server(name: str) -> HTTPServer:
    for known in HTTP_SERVERS:
        if name == known:
            return known
    raise InvalidInput(f"--http-server {name!r} must be one of: {', '.join(HTTP_SERVERS)}")


def run(
    app: Any, bind: str, log_level: str = "warning", http_server: HTTPServer = DEFAULT_HTTP_SERVER
) -> None:
    host, port = parse_bind(bind)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if http_server == "granian":
        _run_granian(app, host, port, log_level)
    else:
        _run_uvicorn(app, host, port, log_level)


def _run_uvicorn(app: Any, host: str, port: int, log_level: str) -> None:
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_level=log_level,
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_S,
        backlog=4096,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    # uvicorn handles SIGINT/SIGTERM itself; SIGHUP should stop too when a terminal closes.
    signal.signal(signal.SIGHUP, lambda *_: setattr(server, "should_exit", True))
    server.run()


def _run_granian(app: Any, host: str, port: int, log_level: str) -> None:
    from granian import Granian
    from granian.constants import Interfaces, Loops
    from granian.log import LogLevels

    server = Granian(
        "taskfleet",  # a name only: the loader below hands over the app object
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=1,
        loop=Loops.uvloop,
        log_level=LogLevels(log_level),
        log_access=False,
        # Granian stops accepting connections once this many requests are in flight;
        # every open notification channel is one, so allow as many as a task server holds.
        backlog=4096,
        backpressure=MAX_OPEN_REQUESTS,
    )
    # One worker process, forked from this one, so it inherits the app object.
    server.serve(target_loader=lambda _target: app)
