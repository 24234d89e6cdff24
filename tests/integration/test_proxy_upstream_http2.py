"""HTTP/1.1 callers through `meshbatch run` to HTTP/2 upstreams (`protocol: http2`): h2c by prior knowledge, the
peer's stream limit honoured under concurrency, a batch route, GOAWAY and resets mid-traffic, a hostile upstream,
and h2 by ALPN over mTLS."""

from __future__ import annotations

import concurrent.futures
import json
import socket
import struct
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testbed.config import cluster, config, listener, route
from testbed.h2_upstream import H2Upstream, h2_server_context
from testbed.pki import Pki
from testbed.proxy import MeshbatchProcess, metric_value
from testbed.raw import RawClient
from testbed.upstream import UpstreamServer


@pytest.fixture(scope="module")
def h2up() -> Iterator[dict[str, H2Upstream]]:
    servers = {
        "plain": H2Upstream("plain").start(),
        "two": H2Upstream("two", max_concurrent_streams=2).start(),
        "goaway": H2Upstream("goaway", goaway_after=5).start(),
        "shut": H2Upstream("shut", initial_window=0).start(),
    }
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, h2up: dict[str, H2Upstream], upstreams: dict[str, UpstreamServer]) -> MeshbatchProcess:
    def h2(name: str, upstream: str, **extra: Any) -> dict[str, Any]:
        return cluster(name, h2up[upstream].address, protocol="http2", **extra)

    routes = [
        route("batch", "plain", {"path_prefix": "/orders"}, timeout_ms=5000,
              batch={"max_items": 8, "max_wait_ms": 20, "codec": "json-array", "upstream_path": "/mirror?ms=200",
                     "max_in_flight": 1}),
        route("two", "two", {"path_prefix": "/two"}, timeout_ms=10000),
        route("goaway", "goaway", {"path_prefix": "/goaway"}, timeout_ms=10000),
        route("shut", "shut", {"path_prefix": "/shut"}, timeout_ms=500),
        route("small", "small", {"path_prefix": "/small"}, timeout_ms=5000),
        route("short", "plain-short", {"path_prefix": "/short"}, timeout_ms=300),
        route("not-h2", "not-h2", {"path_prefix": "/not-h2"}),
        route("all", "plain", timeout_ms=5000),
    ]
    clusters = [
        h2("plain", "plain"),
        h2("plain-short", "plain"),
        h2("two", "two", max_connections=1),
        h2("goaway", "goaway", max_connections=1),
        h2("shut", "shut"),
        h2("small", "plain", max_response_bytes=100_000),
        cluster("not-h2", upstreams["a"].address, protocol="http2"),  # an HTTP/1.1 server
    ]
    process: MeshbatchProcess = module_mesh.start(config([listener("main", routes)], clusters))
    return process


@pytest.fixture(scope="module")
def client(proxy: MeshbatchProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=proxy.url("main"), timeout=10) as c:
        yield c


def test_an_http1_caller_reaches_an_h2c_upstream(client: httpx.Client, h2up: dict[str, H2Upstream]) -> None:
    answer = client.post("/hello?x=1", content=b"payload", headers={"host": "svc", "x-tag": "t1"})
    assert answer.status_code == 200, answer.text
    echo = answer.json()
    assert echo["server"] == "plain" and echo["method"] == "POST" and echo["path"] == "/hello?x=1"
    assert echo["body"] == "payload"
    sent = echo["headers"]
    assert sent[":authority"] == "svc" and sent[":scheme"] == "http" and sent["x-tag"] == "t1"
    assert sent["te"] == "trailers" and "connection" not in sent and "host" not in sent
    assert answer.headers["x-upstream"] == "plain"
    assert answer.headers["via"] == "1.1 meshbatch"
    assert client.get("/status/404").status_code == 404


def test_the_peers_stream_limit_is_honoured(client: httpx.Client, h2up: dict[str, H2Upstream]) -> None:
    upstream = h2up["two"]
    upstream.reset()
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda i: client.get(f"/two/delay?ms=50&i={i}"), range(20)))
    assert [a.status_code for a in answers] == [200] * 20
    assert len(upstream.seen) == 20
    assert upstream.max_open == 2  # the peer's SETTINGS_MAX_CONCURRENT_STREAMS, never more
    assert upstream.connections == 1  # max_connections: 1: callers waited for a free stream
    assert len({a.json()["stream"] for a in answers}) == 20  # one stream each, on the one connection


def test_a_batch_route_to_an_h2c_upstream(proxy: MeshbatchProcess, h2up: dict[str, H2Upstream]) -> None:
    upstream = h2up["plain"]
    upstream.reset()
    with httpx.Client(base_url=proxy.url("main"), timeout=10) as c, concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: c.post("/orders", json={"n": i}), range(8)))
    assert [a.status_code for a in answers] == [200] * 8
    assert [a.json() for a in answers] == [{"n": i} for i in range(8)]
    batches = [json.loads(s.body) for s in upstream.seen if s.path.startswith("/mirror")]
    assert 1 <= len(batches) < 8 and sorted(item["n"] for b in batches for item in b) == list(range(8))


def test_goaway_mid_traffic_loses_and_duplicates_nothing(client: httpx.Client, h2up: dict[str, H2Upstream]) -> None:
    upstream = h2up["goaway"]  # a GOAWAY after every 5th stream of a connection
    upstream.reset()
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda i: client.post(f"/goaway/delay?ms=20&id={i}", content=str(i)), range(30)))
    statuses = Counter(a.status_code for a in answers)
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[200] >= 25  # refused streams are sent again on a new connection
    processed = Counter(s.body for s in upstream.seen)
    assert all(n == 1 for n in processed.values()), processed  # a POST is never processed twice
    answered = {a.request.content for a in answers if a.status_code == 200}
    assert answered <= set(processed)  # ... and each 200 was processed
    for a in answers:
        if a.status_code == 503:
            assert a.json()["reason"] == "upstream_refused_stream"
    assert upstream.connections > 1


@pytest.mark.parametrize(("path", "status", "reason"), [
    ("/reset", 502, "upstream_reset"),
    ("/refuse", 503, "upstream_refused_stream"),
    ("/huge-headers?n=100", 502, "upstream_headers_too_large"),
    ("/hpack-bomb?n=1000", 502, "upstream_headers_too_large"),
    ("/unopened", 502, "bad_upstream_response"),
    ("/short/silent", 504, "upstream_timeout"),
])
def test_a_hostile_or_failing_upstream_is_answered_for(client: httpx.Client, path: str, status: int,
                                                       reason: str) -> None:
    answer = client.post(path, content=b"x")
    assert answer.status_code == status, answer.text
    assert answer.json()["reason"] == reason
    assert client.get("/after").status_code == 200  # the proxy goes on (on a new connection if it must)


def test_an_endless_body_streams_then_is_cut_off_at_the_size_limit(proxy: MeshbatchProcess,
                                                                    client: httpx.Client) -> None:
    # No length said and more to come after each read: it streams, so passing `max_response_bytes` comes after
    # its head went out and can only reset the caller's connection (never a cut answer that looks whole), unless
    # the first read already brought more than the limit (then it is a 502, nothing sent yet).
    try:
        answer = client.post("/small/endless", content=b"x")
    except httpx.TransportError:
        text = httpx.get(proxy.url("admin", "/metrics"), timeout=5).text
        assert metric_value(text, "meshbatch_downstream_aborts_total", reason="upstream_response_too_large") >= 1
    else:
        assert answer.status_code == 502 and answer.json()["reason"] == "upstream_response_too_large"
    assert client.get("/after").status_code == 200


def test_an_endpoint_that_does_not_speak_http2_is_refused(client: httpx.Client) -> None:
    answer = client.get("/not-h2/x")
    assert answer.status_code == 503, answer.text
    assert answer.json()["reason"] == "upstream_http2_refused"


def test_a_window_never_opened_times_out(client: httpx.Client) -> None:
    started = time.monotonic()
    answer = client.post("/shut/x", content=b"a body the upstream never lets us send")
    assert answer.status_code == 504, answer.text
    assert answer.json()["reason"] == "upstream_timeout"
    assert time.monotonic() - started < 3
    assert client.get("/shut/no-body").status_code == 200  # a request without a body needs no window


def test_a_caller_that_leaves_has_its_stream_reset(proxy: MeshbatchProcess, h2up: dict[str, H2Upstream]) -> None:
    upstream = h2up["plain"]
    upstream.reset()
    with RawClient(proxy.address("main")) as raw:
        raw.send(b"GET /silent/leaving HTTP/1.1\r\nhost: svc\r\n\r\n")
        _wait(lambda: any(s.path == "/silent/leaving" for s in upstream.seen))
        raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # it leaves (RST)
    started = time.monotonic()
    leaving = next(s for s in upstream.seen if s.path == "/silent/leaving")
    _wait(lambda: (leaving.stream, 8) in upstream.resets)  # RST_STREAM CANCEL
    assert time.monotonic() - started < 2  # at once, not at the route's timeout (5 s)
    with httpx.Client(base_url=proxy.url("main"), timeout=5) as c:
        answer = c.get("/fine")
    assert answer.status_code == 200
    assert answer.json()["connection"] == leaving.connection  # the shared connection goes on


def _wait(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_trailers_reach_an_http1_caller_that_asks(proxy: MeshbatchProcess) -> None:
    with RawClient(proxy.address("main")) as raw:
        raw.send(b"GET /trailers HTTP/1.1\r\nhost: svc\r\nte: trailers\r\n\r\n")
        head = raw.read_until(b"\r\n\r\n")
        assert b"transfer-encoding: chunked" in head.lower()
        rest = raw.read_until(b"\r\n0\r\n")
        tail = raw.read_until(b"\r\n\r\n")
    assert b'"server": "plain"' in rest
    assert b"grpc-status: 0\r\n" in tail and b"grpc-message: fine\r\n" in tail and b"x-checksum: 42\r\n" in tail
    plain = httpx.get(proxy.url("main", "/trailers"), timeout=5)  # no TE: trailers: a plain answer, no trailers
    assert plain.status_code == 200 and "content-length" in plain.headers and plain.json()["server"] == "plain"


# h2 by ALPN over mTLS -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pki, Path]:
    root = tmp_path_factory.mktemp("pki")
    main = Pki(root)
    main.issue("server", "/ns/shop/sa/orders")
    main.issue("client", "/ns/shop/sa/web")
    return main, root


def test_h2_over_mtls_by_alpn(mesh: Any, pki: tuple[Pki, Path]) -> None:
    main, root = pki
    context = h2_server_context(str(root / "server.crt"), str(root / "server.key"), str(main.ca))
    h1_only = h2_server_context(str(root / "server.crt"), str(root / "server.key"), str(main.ca), ("http/1.1",))
    good, bad = H2Upstream("tls", tls=context).start(), H2Upstream("h1-only", tls=h1_only).start()
    try:
        tls = {"mode": "strict"}
        proxy = mesh.start(config(
            [listener("main", [route("bad", "bad", {"path_prefix": "/bad"}), route("all", "good")])],
            [cluster("good", good.address, protocol="http2", tls=tls),
             cluster("bad", bad.address, protocol="http2", tls=tls)],
            identity=main.identity("client")))
        answer = httpx.get(proxy.url("main", "/over-tls"), timeout=5)
        assert answer.status_code == 200, answer.text
        assert answer.json()["headers"][":scheme"] == "https"
        refused = httpx.get(proxy.url("main", "/bad/x"), timeout=5)
        assert refused.status_code == 503
        assert refused.json()["reason"] == "upstream_alpn_refused"
        assert "did not select h2" in refused.json()["detail"]
    finally:
        good.stop()
        bad.stop()
