"""Connections that never complete a request are closed, on the NS and the task server.

Real processes and real sockets: idle connections, requests whose headers stop half
way, and a slowloris that trickles a header a byte at a time, all closed within the
server's timeouts (``server.capacity``) while the server keeps answering. Over TLS the
sockets complete the handshake first (the servers take a connection without a client
certificate; the app decides per route), so the timeouts measured are the HTTP ones.
"""

from __future__ import annotations

import selectors
import socket
import ssl
import time
from dataclasses import dataclass, field

import httpx
import pytest

from taskfleet.server.capacity import FIRST_REQUEST_S, HEADERS_S
from taskfleet.server.serve import HANDSHAKE_S
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


def tls_client() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # what is measured here is the server's timeouts
    return context


@dataclass
class Held:
    """Sockets held open against one server: since when, and when the server closed each."""

    url: str
    idle: list[socket.socket] = field(default_factory=list)
    partial: list[socket.socket] = field(default_factory=list)
    trickled: list[socket.socket] = field(default_factory=list)
    opened_at: dict[socket.socket, float] = field(default_factory=dict)
    closed_at: dict[socket.socket, float] = field(default_factory=dict)

    def connect(self) -> socket.socket:
        port = int(self.url.rsplit(":", 1)[1])
        sock = socket.create_connection(("127.0.0.1", port))
        if self.url.startswith("https:"):
            sock = tls_client().wrap_socket(sock)
        self.opened_at[sock] = time.monotonic()
        return sock

    def open(self) -> None:
        for group, count in ((self.idle, IDLE), (self.partial, PARTIAL), (self.trickled, TRICKLED)):
            for _ in range(count):
                group.append(self.connect())
        for sock in self.partial + self.trickled:
            sock.send(PARTIAL_REQUEST)
            self.opened_at[sock] = time.monotonic()  # the header timeout starts here
        for sock in self.all:
            sock.setblocking(False)

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
            except ssl.SSLWantReadError:
                continue  # part of a TLS record: not closed yet
            except OSError:
                data = b""
            assert data == b"", f"a server answered a request it never completed: {data!r}"
            owner.closed_at[sock] = time.monotonic()
            selector.unregister(sock)
    selector.close()


def test_connections_that_never_complete_a_request_are_closed(fleet: Fleet) -> None:
    # Given an NS and a task server
    ts = fleet.start_ts("ts-1")
    urls = [fleet.ns_url, ts.url]
    servers = [Held(url) for url in urls]
    try:
        # When each gets 1,000 idle connections, 200 requests stalled half way through
        # their headers and 5 slowloris requests trickling a header byte every half second
        for held in servers:
            held.open()
        # Then both keep answering meanwhile (once a server has answered, it has taken
        # every connection opened before: over TLS it may still be finishing handshakes
        # when the client is done with its own, and the timeouts start from there)
        ready = {}
        for held in servers:
            assert hello(held.url).status_code == 200
            ready[held.url] = time.monotonic()

        # And every one of those connections is closed within the timeouts
        hold(servers, until=max(ready.values()) + max(FIRST_REQUEST_S, HEADERS_S) + MARGIN_S)
        for held in servers:
            still_open = len(held.all) - len(held.closed_at)
            assert still_open == 0, f"{held.url}: {still_open} connections still open"
            for group, limit in (
                (held.idle, FIRST_REQUEST_S),
                (held.partial, HEADERS_S),
                (held.trickled, HEADERS_S),
            ):
                latest = max(held.closed_at[s] for s in group) - ready[held.url]
                assert latest <= limit + MARGIN_S, (held.url, limit, latest)
                shortest = min(held.closed_at[s] - held.opened_at[s] for s in group)
                assert shortest >= limit - 1, (held.url, limit, shortest)  # by the timeout
    finally:
        for held in servers:
            held.close()

    # And both still serve new connections afterwards
    for url in urls:
        assert hello(url).status_code == 200


def hello(url: str) -> httpx.Response:
    return httpx.get(f"{url}/hello", timeout=10, verify=tls_client())


def test_a_connection_that_never_starts_its_tls_handshake_is_closed(fleet: Fleet) -> None:
    # Given a TCP connection to the NS's TLS port that never sends a byte
    with socket.create_connection(("127.0.0.1", fleet.ns_port), timeout=30) as sock:
        opened = time.monotonic()
        # When the handshake timeout passes, Then the NS has closed it (EOF or reset)
        try:
            assert sock.recv(1) == b""
        except ConnectionResetError:
            pass
        assert time.monotonic() - opened < HANDSHAKE_S + 5
    # and it still answers
    assert httpx.get(f"{fleet.ns_url}/hello", verify=False).status_code == 200
