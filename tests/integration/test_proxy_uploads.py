"""HTTP/2 request bodies forwarded as they arrive, through `meshbatch run`: a grpcio client-streaming call whose
server sees the first message before the client sends the last (events and queues, no timers), a large upload to
an HTTP/1.1 upstream (chunked) held back by flow control while the upstream does not read, request trailers to an
HTTP/2 upstream, a caller's reset cancelling the upstream request, no retry once the body went, and a batching
route that still reads the body whole."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from h2.errors import ErrorCodes
from h2.events import PingAckReceived

from testbed.batch_upstream import BatchUpstream, batch_route, wait_until
from testbed.config import cluster, config, listener, route
from testbed.grpc_upstream import GrpcUpstream
from testbed.h2_upstream import H2Upstream
from testbed.h2peer import H2Socket, request_headers
from testbed.proxy import MeshbatchProcess
from testbed.upload_upstream import UploadUpstream

WAIT = 10.0  # the bound of each wait for an event (a failure, never a timer the test relies on)
WINDOW = 65_535


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Any]]:
    made: dict[str, Any] = {"grpc": GrpcUpstream().start(), "h1": UploadUpstream().start(),
                            "refusing": UploadUpstream(status=503).start(), "h2": H2Upstream("h2").start(),
                            "batch": BatchUpstream().start()}
    yield made
    for server in made.values():
        server.stop()


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, servers: dict[str, Any]) -> MeshbatchProcess:
    retry = {"retry_on": ["5xx", "reset"], "num_retries": 3}
    routes = [route("grpc", "grpc", {"path_prefix": "/test.Echo/"}, timeout_ms=20_000),
              batch_route("orders", "/orders/", "/b/json-array/ok", max_wait_ms=1),
              route("refusing", "refusing", {"path_prefix": "/refusing/"}, retry=retry),
              route("h2", "h2", {"path_prefix": "/h2/"}),
              route("mirrored", "h1", {"path_prefix": "/mirrored/"}, mirror={"cluster": "h2", "percent": 100}),
              route("h1", "h1", {"path_prefix": "/"}, timeout_ms=20_000)]
    clusters = [cluster("grpc", servers["grpc"].address, protocol="http2"), cluster("h1", servers["h1"].address),
                cluster("refusing", servers["refusing"].address), cluster("batch", servers["batch"].address),
                cluster("h2", servers["h2"].address, protocol="http2")]
    limits = {"max_body_bytes": 64 << 20, "max_buffer_bytes": 65_536}
    process: MeshbatchProcess = module_mesh.start(config(
        [listener("main", routes, limits, http2={"initial_window_size": WINDOW})], clusters))
    return process


@pytest.fixture
def h1(servers: dict[str, Any]) -> Iterator[UploadUpstream]:
    upstream: UploadUpstream = servers["h1"]
    upstream.drain()
    yield upstream
    upstream.reading.set()


def test_grpc_client_stream_reaches_the_server_before_it_ends(proxy: MeshbatchProcess,
                                                              servers: dict[str, Any]) -> None:
    upstream: GrpcUpstream = servers["grpc"]
    seen: list[bytes] = []

    def messages() -> Iterator[bytes]:
        for i in range(3):
            yield b"m%d" % i
            seen.append(upstream.received.get(timeout=WAIT))  # the server has it before the next one is sent

    host, port = proxy.address("main")
    with grpc.insecure_channel(f"{host}:{port}") as channel:
        answer = channel.stream_unary("/test.Echo/Collect")(messages(), timeout=WAIT * 2)
    assert answer == b"m0,m1,m2" and seen == [b"m0", b"m1", b"m2"]
    assert upstream.ended.get(timeout=WAIT) == "done"


def test_a_caller_reset_mid_upload_resets_the_http2_upstream_stream(proxy: MeshbatchProcess,
                                                                    servers: dict[str, Any]) -> None:
    upstream: H2Upstream = servers["h2"]
    upstream.reset()
    with H2Socket(proxy.address("main"), timeout=WAIT) as h2:
        sid = h2.conn.get_next_available_stream_id()
        h2.conn.send_headers(sid, request_headers("/h2/echo", "POST"))
        h2.send()
        h2.conn.send_data(sid, b"some")
        h2.send()
        wait_until(lambda: upstream.max_open >= 1, WAIT, "the upstream stream")
        h2.conn.reset_stream(sid, ErrorCodes.CANCEL)
        h2.send()
        resets = wait_until(lambda: list(upstream.resets), WAIT, "the upstream's RST_STREAM")
    assert [code for _, code in resets] == [ErrorCodes.CANCEL]
    assert not upstream.seen  # it never saw the body end


def send_within_windows(h2: H2Socket, sid: int, body: bytes, sent: int) -> int:
    """Send what the windows allow from `sent` on; the new offset."""
    conn = h2.conn
    while sent < len(body):
        size = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size, len(body) - sent)
        if size <= 0:
            break
        conn.send_data(sid, body[sent:sent + size])
        sent += size
    h2.send()
    return sent


def sync(h2: H2Socket) -> None:
    """PING, and read until its ACK: the proxy has read everything sent before it (later frames come in later
    reads, so a body sent after this is still arriving when the head is dispatched)."""
    seen = len(h2.answers.events)
    h2.conn.ping(b"syncsync")
    h2.send()
    h2.read_until(lambda a: any(isinstance(e, PingAckReceived) for e in a.events[seen:]))


def read_once(h2: H2Socket) -> None:
    """Read what the proxy sent (window updates), blocking until something comes."""
    data = h2.sock.recv(65_536)
    h2.answers.take(h2.conn, h2.conn.receive_data(data))
    h2.send()


def test_a_large_upload_streams_chunked_with_bounded_memory(proxy: MeshbatchProcess, h1: UploadUpstream) -> None:
    body = bytes(range(256)) * (16 * 4096)  # 16 MiB
    with H2Socket(proxy.address("main"), timeout=WAIT) as h2:
        sid = h2.conn.get_next_available_stream_id()
        h2.conn.send_headers(sid, request_headers("/upload", "POST"))
        h2.send()
        head = h1.heads.get(timeout=WAIT)
        assert head["headers"].get("transfer-encoding") == "chunked"  # no length from the caller: chunked
        h1.reading.clear()  # the upstream took the head, then reads (almost) nothing: the caller is held back
        sent = send_within_windows(h2, sid, body, 0)
        h2.sock.settimeout(1.0)  # (a quiet socket ends the loop: the proxy has stopped granting credit)
        try:
            while sent < len(body):
                read_once(h2)
                sent = send_within_windows(h2, sid, body, sent)
        except TimeoutError:
            pass
        held = sent
        # What the proxy let the caller send while the upstream read nothing: a stream window, the upstream
        # connection's write buffer and the kernel's socket buffers; never the body.
        assert held < 6 << 20, held
        h2.sock.settimeout(WAIT)
        h1.reading.set()
        while sent < len(body):
            read_once(h2)
            sent = send_within_windows(h2, sid, body, sent)
        h2.conn.end_stream(sid)
        h2.send()
        answers = h2.read_until(lambda a: sid in a.ended, timeout=WAIT * 3)
    summary = json.loads(answers.body[sid])
    assert summary["size"] == len(body) and summary["sha256"] == hashlib.sha256(body).hexdigest()
    assert answers.status[sid] == 200


def test_a_content_length_goes_upstream_as_given(proxy: MeshbatchProcess, h1: UploadUpstream) -> None:
    body = b"y" * 200_000
    with H2Socket(proxy.address("main"), timeout=WAIT) as h2:
        sid = h2.conn.get_next_available_stream_id()
        h2.conn.send_headers(sid, request_headers("/sized", "POST", extra=[("content-length", str(len(body)))]))
        sent = send_within_windows(h2, sid, body, 0)
        while sent < len(body):
            read_once(h2)
            sent = send_within_windows(h2, sid, body, sent)
        h2.conn.end_stream(sid)
        h2.send()
        answers = h2.read_until(lambda a: sid in a.ended)
    summary = json.loads(answers.body[sid])
    assert (summary["chunked"], summary["content_length"], summary["size"]) == (False, str(len(body)), len(body))


def test_a_caller_reset_mid_upload_cuts_the_upstream_request(proxy: MeshbatchProcess, h1: UploadUpstream) -> None:
    with H2Socket(proxy.address("main"), timeout=WAIT) as h2:
        sid = h2.conn.get_next_available_stream_id()
        h2.conn.send_headers(sid, request_headers("/cut", "POST"))
        h2.send()
        h2.conn.send_data(sid, b"a" * 1000)
        h2.send()
        assert h1.pieces.get(timeout=WAIT)  # the upstream is reading the body
        h2.conn.reset_stream(sid, ErrorCodes.CANCEL)
        h2.send()
        assert h1.cut.get(timeout=WAIT)  # its connection closed before the body's end
        other = h2.request("/after", "POST", b"fine")  # the connection goes on
        answers = h2.read_until(lambda a: other in a.ended)
    assert json.loads(answers.body[other])["size"] == 4


def test_request_trailers_reach_an_http2_upstream(proxy: MeshbatchProcess) -> None:
    with H2Socket(proxy.address("main"), timeout=WAIT) as h2:
        sid = h2.conn.get_next_available_stream_id()
        h2.conn.send_headers(sid, request_headers("/h2/echo", "POST"))
        sync(h2)
        h2.conn.send_data(sid, b"part one, ")
        h2.send()
        h2.conn.send_data(sid, b"part two")
        h2.conn.send_headers(sid, [(b"x-checksum", b"abc")], end_stream=True)
        h2.send()
        answers = h2.read_until(lambda a: sid in a.ended)
    echo = json.loads(answers.body[sid])
    assert echo["body"] == "part one, part two" and echo["trailers"] == {"x-checksum": "abc"}


def test_no_retry_once_the_body_went(proxy: MeshbatchProcess, servers: dict[str, Any]) -> None:
    refusing: UploadUpstream = servers["refusing"]
    refusing.drain()
    with H2Socket(proxy.address("main"), timeout=WAIT) as h2:
        sid = h2.conn.get_next_available_stream_id()
        h2.conn.send_headers(sid, request_headers("/refusing/x", "POST"))
        sync(h2)
        h2.conn.send_data(sid, b"once", end_stream=True)
        h2.send()
        answers = h2.read_until(lambda a: sid in a.ended)
    assert answers.status[sid] == 503
    assert refusing.heads.qsize() == 1  # sent once: the body went as it came, it cannot be sent again


def test_a_mirrored_route_reads_the_body_whole_first(proxy: MeshbatchProcess, h1: UploadUpstream) -> None:
    with H2Socket(proxy.address("main"), timeout=WAIT) as h2:
        sid = h2.conn.get_next_available_stream_id()
        h2.conn.send_headers(sid, request_headers("/mirrored/x", "POST"))
        sync(h2)
        h2.conn.send_data(sid, b"whole ")
        h2.send()
        h2.conn.send_data(sid, b"body", end_stream=True)
        h2.send()
        answers = h2.read_until(lambda a: sid in a.ended)
    head = h1.heads.get(timeout=WAIT)  # its length known: it went whole (streamed, it would be chunked)
    assert head["headers"].get("content-length") == "10" and json.loads(answers.body[sid])["size"] == 10


def test_a_batching_route_reads_a_body_still_arriving_whole(proxy: MeshbatchProcess,
                                                           servers: dict[str, Any]) -> None:
    with H2Socket(proxy.address("main"), timeout=WAIT) as h2:
        sid = h2.conn.get_next_available_stream_id()
        h2.conn.send_headers(sid, request_headers("/orders/x", "POST", extra=[("content-type", "application/json")]))
        sync(h2)  # dispatched before its body: the route waits for it whole
        h2.conn.send_data(sid, b'{"n": ')
        h2.send()
        h2.conn.send_data(sid, b'42}', end_stream=True)
        h2.send()
        answers = h2.read_until(lambda a: sid in a.ended)
    assert answers.status[sid] == 200 and json.loads(answers.body[sid])["echo"] == {"n": 42}
