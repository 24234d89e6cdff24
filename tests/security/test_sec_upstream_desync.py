"""Upstream response desync: an upstream whose bytes do not end where its answer ends must never answer
another caller. Each scenario runs two clients, one after the other, through `meshbatch run` to one endpoint
whose cluster allows a single connection (so a kept connection is reused for the second client): the first
client triggers the hostile answer, the second must get its own answer (never the first one's bytes), and
the hostile connection must not be the one that carried the second request."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from testbed.config import cluster, config, listener, route
from testbed.hostile import HostileUpstream, Peer, RawRequest, answer
from testbed.proxy import MeshbatchProcess

FIRST = answer(200, b"first", "x-who: first")
STOLEN = b"HTTP/1.1 401 Unauthorized\r\nset-cookie: session=victim\r\ncontent-length: 6\r\n\r\nstolen"
SPLIT = answer(200, b"first", "x-cut: yes")
SMUGGLED_BODY = 8 << 20  # the early answer arrives while most of this is still in the proxy's write buffer


def script(peer: Peer, request: RawRequest) -> bool:
    kind = request.path.split("/")[1]
    if kind == "early":  # answer at once, then read the request body as if it were the next request
        peer.send(FIRST)
        return True
    body_length = request.length
    peer.read_body(body_length)
    if kind == "second-head":
        peer.send(FIRST + STOLEN)
    elif kind == "garbage":
        peer.send(FIRST + b"\x00garbage\r\n")
    elif kind == "blank":
        peer.send(FIRST + b"\r\n")
    elif kind == "late":
        peer.send(FIRST)
        time.sleep(0.05)
        peer.send(STOLEN)  # while the connection sits idle in the pool
    elif kind == "switch":
        peer.send(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: evil\r\nconnection: upgrade\r\n\r\n" + STOLEN)
    elif kind == "hints":
        peer.send(b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>\r\n\r\n" + FIRST)
    elif kind == "split":
        cut = int(request.path.split("/")[2])
        peer.send(SPLIT[:cut])
        time.sleep(0.002)
        peer.send(SPLIT[cut:])
    elif kind == "smuggled":
        peer.send(STOLEN)
    else:
        peer.send(answer(200, b"own:" + request.path.encode()))
    return True


@pytest.fixture(scope="module")
def upstream() -> Iterator[HostileUpstream]:
    # A small receive window: a request body the upstream does not read stays in the proxy's write buffer.
    server = HostileUpstream(script, receive_buffer=65_536).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, upstream: HostileUpstream) -> MeshbatchProcess:
    routes = [route("all", "hostile", timeout_ms=10_000)]
    return module_mesh.start(config([listener("main", routes, {"max_body_bytes": 32 << 20})],
                                    [cluster("hostile", upstream.address, max_connections=1)]))


def two_clients(proxy: MeshbatchProcess, first: httpx.Request | str, own: str) -> tuple[httpx.Response, httpx.Response]:
    """The first client's request, then (once it has its whole answer) the second client's, each on its own
    connection to the proxy."""
    with httpx.Client(base_url=proxy.url("main"), timeout=15) as one, \
            httpx.Client(base_url=proxy.url("main"), timeout=15) as two:
        a = one.send(first) if isinstance(first, httpx.Request) else one.get(first)
        b = two.get(own)
    return a, b


def assert_own(b: httpx.Response, own: str) -> None:
    assert b.status_code == 200, (b.status_code, b.headers, b.content)
    assert b.content == b"own:" + own.encode()
    assert "set-cookie" not in b.headers


@pytest.mark.parametrize("kind", ["second-head", "garbage", "blank", "hints"])
def test_bytes_after_the_answer_never_reach_the_next_client(proxy: MeshbatchProcess, upstream: HostileUpstream,
                                                            kind: str) -> None:
    own = f"/own/{kind}"
    a, b = two_clients(proxy, f"/{kind}", own)
    assert (a.status_code, a.content, a.headers["x-who"]) == (200, b"first", "first")
    assert_own(b, own)
    assert upstream.last(own).connection != upstream.last(f"/{kind}").connection  # never reused


def test_bytes_while_idle_close_the_connection(proxy: MeshbatchProcess, upstream: HostileUpstream) -> None:
    with httpx.Client(base_url=proxy.url("main"), timeout=15) as one:
        a = one.get("/late")
    assert (a.status_code, a.content) == (200, b"first")
    upstream.wait_closed(upstream.last("/late").connection)  # the bytes came while idle: the proxy hung up
    with httpx.Client(base_url=proxy.url("main"), timeout=15) as two:
        assert_own(two.get("/own/late"), "/own/late")


def test_an_unasked_upgrade_is_a_502_and_the_connection_is_dropped(proxy: MeshbatchProcess,
                                                                   upstream: HostileUpstream) -> None:
    own = "/own/switch"
    a, b = two_clients(proxy, "/switch", own)
    assert a.status_code == 502 and a.json()["reason"] == "bad_upstream_response"
    assert_own(b, own)
    assert upstream.last(own).connection != upstream.last("/switch").connection


def test_an_answer_before_the_body_was_sent_is_not_reused(proxy: MeshbatchProcess, upstream: HostileUpstream) -> None:
    # The body is a request of its own: an upstream that answered early reads it as the next request, and its
    # answer (a Set-Cookie meant for nobody) would go to whoever used the connection next.
    padding = SMUGGLED_BODY
    body = f"POST /smuggled HTTP/1.1\r\nhost: x\r\ncontent-length: {padding}\r\n\r\n".encode() + b"p" * padding
    request = httpx.Request("POST", proxy.url("main", "/early"), content=body)
    own = "/own/early"
    a, b = two_clients(proxy, request, own)
    assert (a.status_code, a.content) == (200, b"first")
    assert_own(b, own)
    assert upstream.last(own).connection != upstream.last("/early").connection


def test_an_answer_cut_at_any_byte_is_read_whole_and_the_connection_kept(proxy: MeshbatchProcess,
                                                                         upstream: HostileUpstream) -> None:
    for cut in range(len(SPLIT) + 1):
        own = f"/own/split-{cut}"
        a, b = two_clients(proxy, f"/split/{cut}", own)
        assert (a.status_code, a.content, a.headers["x-cut"]) == (200, b"first", "yes"), cut
        assert_own(b, own)
        # a clean answer, however it arrived, leaves the connection reusable: the second request used it
        assert upstream.last(own).connection == upstream.last(f"/split/{cut}").connection, cut
