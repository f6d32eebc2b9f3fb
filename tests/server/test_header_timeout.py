"""Connections that never complete a request are closed, on the NS and the task server.

Real processes and real sockets: idle connections, requests whose headers stop half
way, and a slowloris that trickles a header a byte at a time, all closed within the
server's timeouts (``server.capacity``) while the server keeps answering.
"""

from __future__ import annotations

import selectors
import socket
import time
from dataclasses import dataclass, field

import httpx
import pytest

from taskfleet.server.capacity import FIRST_REQUEST_S, HEADERS_S
from tests.fleet import Fleet

pytestmark = [
    pytest.mark.parametrize("db_url", ["sqlite"], indirect=True),
    pytest.mark.timeout(120),
]
IDLE = 1000
PARTIAL = 200
TRICKLED = 5
MARGIN_S = 4.0  # the servers share two cores with the test
PARTIAL_REQUEST = b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


@dataclass
class Held:
    """Sockets held open against one server, and when the server closed each."""

    port: int
    idle: list[socket.socket] = field(default_factory=list)
    partial: list[socket.socket] = field(default_factory=list)
    trickled: list[socket.socket] = field(default_factory=list)
    closed_at: dict[socket.socket, float] = field(default_factory=dict)

    def open(self) -> None:
        for group, count in ((self.idle, IDLE), (self.partial, PARTIAL), (self.trickled, TRICKLED)):
            for _ in range(count):
                sock = socket.create_connection(("127.0.0.1", self.port))
                sock.setblocking(False)
                group.append(sock)
        for sock in self.partial + self.trickled:
            sock.send(PARTIAL_REQUEST)

    @property
    def all(self) -> list[socket.socket]:
        return self.idle + self.partial + self.trickled

    def close(self) -> None:
        for sock in self.all:
            sock.close()


def hold(servers: list[Held], until: float) -> None:
    """Trickle a header byte every half second on the slowloris sockets and note when
    the server closes each socket, until every one is closed or ``until``."""
    selector = selectors.DefaultSelector()
    for held in servers:
        for sock in held.all:
            selector.register(sock, selectors.EVENT_READ, held)
    next_trickle = time.monotonic()
    while selector.get_map() and time.monotonic() < until:
        now = time.monotonic()
        if now >= next_trickle:
            next_trickle = now + 0.5
            for held in servers:
                for sock in held.trickled:
                    if sock not in held.closed_at:
                        try:
                            sock.send(b"x")
                        except OSError:
                            pass  # closed: the selector reports it
        for key, _ in selector.select(timeout=0.1):
            sock, owner = key.fileobj, key.data
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            assert data == b"", f"a server answered a request it never completed: {data!r}"
            owner.closed_at[sock] = time.monotonic()
            selector.unregister(sock)
    selector.close()


def test_connections_that_never_complete_a_request_are_closed(fleet: Fleet) -> None:
    # Given an NS and a task server
    ts = fleet.start_ts("ts-1")
    servers = [Held(fleet.ns_port), Held(ts.port)]
    urls = [fleet.ns_url, ts.url]
    try:
        # When each gets 1,000 idle connections, 200 requests stalled half way through
        # their headers and 5 slowloris requests trickling a header byte every half second
        started = time.monotonic()
        for held in servers:
            held.open()
        # Then both keep answering meanwhile
        for url in urls:
            assert httpx.get(f"{url}/hello", timeout=10).status_code == 200

        # And every one of those connections is closed within the timeouts
        hold(servers, until=started + max(FIRST_REQUEST_S, HEADERS_S) + MARGIN_S + 5)
        for held, url in zip(servers, urls, strict=True):
            still_open = len(held.all) - len(held.closed_at)
            assert still_open == 0, f"{url}: {still_open} connections still open"
            for group, limit in (
                (held.idle, FIRST_REQUEST_S),
                (held.partial, HEADERS_S),
                (held.trickled, HEADERS_S),
            ):
                latest = max(held.closed_at[s] for s in group) - started
                earliest = min(held.closed_at[s] for s in group) - started
                assert latest <= limit + MARGIN_S, (url, latest)
                assert earliest >= limit - 1, (url, earliest)  # closed by the timeout
    finally:
        for held in servers:
            held.close()

    # And both still serve new connections afterwards
    for url in urls:
        assert httpx.get(f"{url}/hello", timeout=10).status_code == 200
