"""Open files: how many connections a server process holds, and refusing the rest politely.

Every connection is an open file, so the open-files limit (``ulimit -n``,
``LimitNOFILE=`` under systemd) bounds how many agents a task server holds. Left
alone, connections use up every file; then the kernel refuses the process
everything else too: uvicorn's accept loop drops new connections (libuv's EMFILE
trick), polls on new connections fail, spool files cannot be written, and the
connections to the NS cannot be renewed.

So at start the soft limit is raised to the hard limit, and the limit is split:

- ``reserve``: files the process needs besides its connections (the listening
  socket, the event loop, stdio and logs, spool files, the NS link or the database
  pool, imports);
- ``connections``: the rest. A new connection past it closes the oldest idle one
  (no request in flight: a keep-alive leftover, or one that never sent a request);
  with none idle, its one request is answered 503 Busy with ``Retry-After`` and the
  connection closed, and past ``drop_above`` (half the reserve further) it is
  closed at once, so a flood never eats the reserve;
- ``channels``: of the connections, how many notification channels may be open
  (``agent_endpoints.channels.ChannelGate``); the remainder stays free for polls and
  status, so those keep being answered when every channel is taken.

A connection that sends nothing is closed after ``FIRST_REQUEST_S``, as uvicorn
closes an idle keep-alive connection after its keep-alive timeout. One that starts a
request but does not complete its headers within ``HEADERS_S`` of its first byte (a
slow or stalled client, or slowloris: a header trickled a byte at a time) is closed
too: otherwise each holds a connection, an open file, for as long as it likes.
"""

from __future__ import annotations

import asyncio
import random
import resource
from dataclasses import dataclass
from typing import Any

from taskfleet.errors import Busy
from taskfleet.protocol import pki
from taskfleet.server.errors import error_response, retry_after
from taskfleet.server.peers import PEER_EXTENSION, TLS_EXTENSION

DEFAULT_RESERVE = 96
MIN_POLL_HEADROOM = 16
FIRST_REQUEST_S = 10.0
HEADERS_S = 10.0  # from a request's first byte to the end of its headers
MIN_IDLE_S = 1.0
TLS_CLOSE_S = 0.5  # stopping: how long a TLS connection may take to close cleanly
REFUSED_IDLE_S = 2.0  # a refused connection that does not even send its request
FULL_RETRY_S = (30.0, 90.0)  # jittered so that refused agents do not come back together


@dataclass(frozen=True)
class Capacity:
    open_files: int
    reserve: int = DEFAULT_RESERVE

    @property
    def connections(self) -> int:
        return max(2 * MIN_POLL_HEADROOM, self.open_files - self.reserve)

    @property
    def channels(self) -> int:
        # A tenth of the connections (at least 16) for polls and status: an agent
        # polls over a second connection while its channel is open.
        return self.connections - max(MIN_POLL_HEADROOM, self.connections // 10)

    @property
    def drop_above(self) -> int:
        return self.connections + self.reserve // 2


def open_files_for(channels: int, reserve: int = DEFAULT_RESERVE) -> int:
    """An open-files limit that gives ``channels`` notification channels (the smallest,
    for more than the minimum of 16)."""
    connections = max(channels + MIN_POLL_HEADROOM, channels * 10 // 9)
    while Capacity(connections + reserve, reserve).channels < channels:
        connections += 1  # at most a few steps: the tenth kept for polls is rounded
    return connections + reserve


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft open-files limit to the hard limit; return (before, now)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # No hard limit: Linux's default ceiling (fs.nr_open) is what the kernel allows.
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= target:
        return target, target
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft, soft  # not allowed here: keep what there is; the log says how much
    return soft, target


def busy_reply(message: str, seconds: float) -> Any:
    """The 503 Busy answer, as an ASGI app: the error tree's body, Retry-After, close."""
    response = error_response(Busy.status_code, Busy.code, message)
    retry_after(response, seconds)
    return response


async def _refuse_full(scope: Any, receive: Any, send: Any) -> None:
    reply = busy_reply(
        "this server holds as many connections as its open-files limit allows; "
        "try again after Retry-After seconds",
        random.uniform(*FULL_RETRY_S),
    )
    await reply(scope, receive, send)


def guarded_protocol(capacity: Capacity) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol, counting connections against ``capacity``."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    # Connections with no request in flight, by when they became idle, oldest first:
    # the first to close when a new connection finds every slot taken (as nginx reuses
    # idle keep-alive ones). Not one idle for less than MIN_IDLE_S: its request may be
    # on its way, and in a herd of reconnecting agents that would cut one off unanswered.
    idle: dict[HttpToolsProtocol, float] = {}

    class Guarded(HttpToolsProtocol):
        # The verified client certificate of a TLS connection, read once per connection
        # and handed to every request on it (server.peers): who is calling, for the app.
        peer: pki.PeerCertificate | None = None
        tls = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            tls = transport.get_extra_info("ssl_object")
            self.tls = tls is not None
            if tls is not None:
                self.peer = pki.peer_of(tls.getpeercert(binary_form=True))
            wait = FIRST_REQUEST_S
            now = self.loop.time()
            if len(self.connections) > capacity.connections:
                oldest = next(iter(idle), None)
                if oldest is not None and now - idle[oldest] >= MIN_IDLE_S:
                    del idle[oldest]
                    oldest.transport.close()
                elif len(self.connections) > capacity.drop_above:
                    transport.abort()  # a flood: whatever happens, the reserve stays free
                    return
                else:
                    self.app = _refuse_full
                    wait = REFUSED_IDLE_S
            idle[self] = now
            # uvicorn's keep-alive timer, which the first byte received cancels; armed
            # here too, so that a connection that never sends a request is closed.
            self.timeout_keep_alive_task = self.loop.call_later(
                wait, self.timeout_keep_alive_handler
            )

        # Armed at a request's first byte, cancelled when its headers are complete.
        headers_timer: asyncio.TimerHandle | None = None
        awaiting_headers = True  # the next byte received starts a request

        def data_received(self, data: bytes) -> None:
            idle.pop(self, None)
            if self.awaiting_headers and self.headers_timer is None:
                self.headers_timer = self.loop.call_later(HEADERS_S, self.transport.close)
            super().data_received(data)

        def on_headers_complete(self) -> None:
            self.awaiting_headers = False
            if self.headers_timer is not None:
                self.headers_timer.cancel()
                self.headers_timer = None
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self.awaiting_headers = True  # (pipelined, the next request's bytes may follow)

        def shutdown(self) -> None:
            super().shutdown()
            if self.tls:
                self.loop.call_later(TLS_CLOSE_S, self._abort_once_answered)

        def _abort_once_answered(self) -> None:
            # Closing a TLS connection sends close_notify and waits for the peer's: an
            # HTTP client with the connection idle in its pool never reads it, and the
            # server would wait out its graceful timeout. Once answered, cut it.
            if self.cycle is not None and not self.cycle.response_complete:
                self.loop.call_later(TLS_CLOSE_S, self._abort_once_answered)
                return
            self.transport.abort()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self.tls:
                self.scope["extensions"] = {PEER_EXTENSION: self.peer, TLS_EXTENSION: True}  # type: ignore[dict-item]

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and not self.pipeline:
                idle[self] = self.loop.time()  # keep-alive: waits for its next request

        def connection_lost(self, exc: Exception | None) -> None:
            idle.pop(self, None)
            if self.headers_timer is not None:
                self.headers_timer.cancel()
            super().connection_lost(exc)

    return Guarded
