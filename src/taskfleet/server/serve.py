"""Run an ASGI app on uvicorn (uvloop + httptools) or granian.

``bench/poll.py`` measures both on the task server's hot path and
docs/benchmarks.md records which one is the default and why. Both run one
process with one event loop: a task server scales out by adding task servers,
not workers, because its agent map and tickle registry live in its memory.

At start the open-files limit is raised and split into connections and
notification channels (``server.capacity``); the app's ``ChannelGate``
(``app.state.channels``) gets its share. On SIGTERM/SIGINT/SIGHUP the listening
socket closes, then the app's stop hooks (``on_stop``) answer its long polls at
once, so the server exits in a moment instead of waiting out every open channel
(up to 300 s) or events wait; requests still running after ``GRACEFUL_S`` are
cancelled. With granian the limits apply, the stop hooks do not run.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from taskfleet.errors import InvalidInput
from taskfleet.server.capacity import (
    DEFAULT_RESERVE,
    Capacity,
    guarded_protocol,
    raise_open_files_limit,
)

HTTPServer = Literal["uvicorn", "granian"]
HTTP_SERVERS: tuple[HTTPServer, ...] = ("uvicorn", "granian")
DEFAULT_HTTP_SERVER: HTTPServer = "uvicorn"
KEEP_ALIVE_S = 75
MAX_OPEN_REQUESTS = 100_000
GRACEFUL_S = 5  # seconds
HANDSHAKE_S = 10.0  # seconds a TLS handshake may take
StopHook = Callable[[], Awaitable[None]]
log = logging.getLogger("taskfleet.server")


def handshake_bounded_loop() -> asyncio.AbstractEventLoop:
    """A uvloop event loop whose TLS servers close a connection that has not completed
    its handshake within ``HANDSHAKE_S`` (uvicorn does not pass the setting through)."""
    import uvloop

    class Loop(uvloop.Loop):
        async def create_server(self, *args: Any, **kwargs: Any) -> Any:
            if kwargs.get("ssl") is not None:
                kwargs.setdefault("ssl_handshake_timeout", HANDSHAKE_S)
            return await super().create_server(*args, **kwargs)

    loop: asyncio.AbstractEventLoop = Loop()
    return loop


def on_stop(app: Any, hook: StopHook) -> None:
    """Run ``hook`` as soon as the server starts to stop, before it waits for open
    requests: hooks end the app's long polls so that stopping takes seconds."""
    try:
        hooks: list[StopHook] = app.state.stop_hooks
    except AttributeError:
        hooks = app.state.stop_hooks = []
    hooks.append(hook)


async def _stop_hooks(app: Any) -> None:
    for hook in getattr(app.state, "stop_hooks", []):
        try:
            await hook()
        except Exception:  # the others still run, and the server still stops
            log.exception("a stop hook failed")


def size(app: Any) -> Capacity:
    """Raise the open-files limit, give the app's channel gate its share, log the figures."""
    before, now = raise_open_files_limit()
    capacity = Capacity(now, getattr(app.state, "open_files_reserve", DEFAULT_RESERVE))
    gate = getattr(app.state, "channels", None)
    if gate is not None:
        gate.capacity = capacity.channels
    log.info(
        "open files: limit %d%s; up to %d connections, %d notification channels",
        now,
        f" (raised from {before})" if now != before else "",
        capacity.connections,
        capacity.channels,
    )
    return capacity


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
    app: Any,
    bind: str,
    log_level: str = "warning",
    http_server: HTTPServer = DEFAULT_HTTP_SERVER,
    tls: ssl.SSLContext | None = None,
) -> None:
    """Serve ``app`` on ``bind``; over TLS with the context ``tls`` unless it is None.

    The context stays the server's own object: loading a new certificate chain into it
    (a renewed or newly approved certificate) applies to every later connection.
    """
    host, port = parse_bind(bind)
    if tls is not None and http_server == "granian":
        raise InvalidInput(
            "--http-server granian cannot tell the app which client certificate a "
            "connection presented, so it serves only with --insecure-http; use uvicorn"
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    capacity = size(app)
    if http_server == "granian":
        _run_granian(app, host, port, log_level, capacity)
    else:
        _run_uvicorn(app, host, port, log_level, capacity, tls)


def _run_uvicorn(
    app: Any, host: str, port: int, log_level: str, capacity: Capacity, tls: ssl.SSLContext | None
) -> None:
    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            for listener in self.servers:
                listener.close()  # no new connections, then answer the open long polls
            await _stop_hooks(app)
            await super().shutdown(sockets)

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        # Over TLS, a loop whose servers give up on a handshake after HANDSHAKE_S: the
        # default (60 s) lets a connection that never starts one hold a slot that long.
        loop="uvloop" if tls is None else "taskfleet.server.serve:handshake_bounded_loop",
        http=guarded_protocol(capacity),
        log_level=log_level,
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=GRACEFUL_S,
        backlog=4096,
        lifespan="on",
        ssl_context_factory=None if tls is None else (lambda _config, _default: tls),
        # Whether a request came over TLS is the connection's to say (server.peers), never
        # an X-Forwarded-Proto header's: node identity needs the TLS session itself.
        proxy_headers=False,
    )
    server = Server(config)
    # uvicorn handles SIGINT/SIGTERM itself; SIGHUP should stop too when a terminal closes.
    signal.signal(signal.SIGHUP, lambda *_: setattr(server, "should_exit", True))
    server.run()


def _run_granian(app: Any, host: str, port: int, log_level: str, capacity: Capacity) -> None:
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
        # every open notification channel is one, so allow as many as the open files do.
        backlog=4096,
        backpressure=min(MAX_OPEN_REQUESTS, capacity.connections),
    )
    # One worker process, forked from this one, so it inherits the app object.
    server.serve(target_loader=lambda _target: app)
