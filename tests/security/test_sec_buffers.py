"""Memory per connection stays bounded whatever clients and upstreams do: large answers stream with
back-pressure both ways, a client that takes nothing is aborted after the send timeout, pipelined requests
are bounded in bytes, and an answer cut mid-body aborts the client's connection instead of looking whole.

The proxy's resident memory is read from /proc/PID/status (VmRSS) around each flood."""

from __future__ import annotations

import fcntl
import hashlib
import socket
import struct
import termios
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from testbed.config import cluster, config, listener, route
from testbed.hostile import HostileUpstream, Peer, RawRequest
from testbed.proxy import MeshbatchProcess, metric_value

MIB = 1 << 20
BIG = 60 * MIB
BLOCK = bytes(range(256)) * 4096  # 1 MiB; each block of a body starts with its own number (see `block`)
BODY_SIZE = 8 * MIB


def block(i: int) -> bytes:
    return i.to_bytes(8, "big") + BLOCK[8:]


def big_digest() -> str:
    digest = hashlib.sha256()
    for i in range(BIG // MIB):
        digest.update(block(i))
    return digest.hexdigest()


DIGEST = big_digest()


def delivered(sock: socket.socket, timeout: float = 10.0) -> None:
    """Until the peer's kernel has acknowledged everything sent on `sock` (Linux: nothing left in its send
    queue), so a reset that follows cannot drop any of it."""
    deadline = time.monotonic() + timeout
    while struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]:
        assert time.monotonic() < deadline, "the proxy did not take the body"
        time.sleep(0.005)
release_held = threading.Event()


def script(peer: Peer, request: RawRequest) -> bool:
    kind = request.path.split("/")[1].split("?")[0]
    peer.read_body(request.length)
    if request.method == "HEAD":
        peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % BIG)
        return False
    if kind == "length":
        peer.send(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: %d\r\n\r\n" % BIG)
        for i in range(BIG // MIB):
            peer.send(block(i))
    elif kind == "chunked":
        peer.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for i in range(BIG // MIB):
            peer.send(b"%x\r\n%s\r\n" % (MIB, block(i)))
        peer.send(b"0\r\n\r\n")
    elif kind == "until-close":
        peer.send(b"HTTP/1.1 200 OK\r\n\r\n")
        for i in range(BIG // MIB):
            peer.send(block(i))
        return False
    elif kind == "reset":  # a head, 4 MiB of a 60 MiB body, then a reset
        peer.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for i in range(4):
            peer.send(b"%x\r\n%s\r\n" % (MIB, block(i)))
        delivered(peer.sock)  # (a reset drops what is unsent: the head must be out first)
        peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        return False
    elif kind == "sized":
        size = int(request.path.split("/")[2])
        peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size + b"s" * size)
    elif kind == "no-content":
        peer.send(b"HTTP/1.1 204 No Content\r\nx-kind: 204\r\n\r\n")
    elif kind == "not-modified":
        peer.send(b"HTTP/1.1 304 Not Modified\r\netag: \"e\"\r\n\r\n")
    elif kind == "held":  # waits for the test before answering (pipelined requests pile up behind it)
        release_held.wait(30)
        peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nheld")
    else:
        peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    return True


@pytest.fixture(scope="module")
def upstream() -> Iterator[HostileUpstream]:
    server = HostileUpstream(script).start()
    yield server
    release_held.set()
    server.stop()


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, upstream: HostileUpstream) -> MeshbatchProcess:
    limits = {"send_timeout_ms": 1000, "max_body_bytes": BODY_SIZE + MIB}
    roomy = {"max_buffer_bytes": 32 * MIB, "idle_timeout_ms": 500, "send_timeout_ms": 60_000}
    return module_mesh.start(config([listener("main", [route("all", "up", timeout_ms=60_000)], limits),
                                     listener("roomy", [route("roomy", "up", timeout_ms=60_000)], roomy)],
                                    [cluster("up", upstream.address)]))


def rss(proxy: MeshbatchProcess) -> int:
    with open(f"/proc/{proxy.proc.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def aborts(proxy: MeshbatchProcess, reason: str, name: str = "main") -> float:
    text = httpx.get(proxy.url("admin", "/metrics"), timeout=5).text
    return metric_value(text, "meshbatch_downstream_aborts_total", listener=name, reason=reason)


def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def stalled_client(proxy: MeshbatchProcess, path: str, name: str = "main") -> socket.socket:
    """A client that asks for `path` and never reads (a small receive buffer, so little sits in the kernel)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(proxy.address(name))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: up\r\n\r\n".encode())
    return sock


def read_raw(proxy: MeshbatchProcess, request: bytes) -> tuple[bytes, str, int]:
    """An HTTP/1.0-style read: the head, then the body to the end of the connection: (head, sha256, size)."""
    digest = hashlib.sha256()
    size = 0
    with socket.create_connection(proxy.address("main"), timeout=30) as sock:
        sock.sendall(request)
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            assert chunk, buffer
            buffer += chunk
        head, _, rest = buffer.partition(b"\r\n\r\n")
        digest.update(rest)
        size += len(rest)
        while chunk := sock.recv(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return head, digest.hexdigest(), size


def test_clients_that_never_read_a_huge_answer_cost_little_and_are_aborted(proxy: MeshbatchProcess,
                                                                           upstream: HostileUpstream) -> None:
    with httpx.Client(timeout=30) as client:  # warm up: one whole streamed answer
        assert len(client.get(proxy.url("main", "/length")).content) == BIG
    before_rss, before_aborts = rss(proxy), aborts(proxy, "send_timeout")
    first = upstream.connections
    clients = [stalled_client(proxy, f"/length?client={i}") for i in range(10)]
    try:
        peak = 0
        deadline = time.monotonic() + 15
        while aborts(proxy, "send_timeout") < before_aborts + 10:  # each aborted once its output stalls
            peak = max(peak, rss(proxy))
            assert time.monotonic() < deadline, "the stalled clients were not aborted"
            time.sleep(0.05)
        peak = max(peak, rss(proxy))
    finally:
        for sock in clients:
            sock.close()
    assert peak - before_rss < 100 * MIB, f"RSS grew by {(peak - before_rss) / MIB:.0f} MiB"
    # every upstream connection of a stalled client was dropped (mid-body: never reused)
    for number in range(first + 1, upstream.connections + 1):
        upstream.wait_closed(number)


def test_an_idle_connection_with_unsent_output_is_aborted(proxy: MeshbatchProcess) -> None:
    # An answer within a (large) buffer limit is written whole; its client reads none of it. Once idle, the
    # connection is aborted: a graceful close would keep the buffer until a flush that never comes.
    before = aborts(proxy, "idle_timeout", "roomy")
    sock = stalled_client(proxy, f"/sized/{20 * MIB}", "roomy")
    try:
        until(lambda: aborts(proxy, "idle_timeout", "roomy") >= before + 1, 10, "the idle connection was kept")
    finally:
        sock.close()


@pytest.mark.parametrize(("path", "framing"), [("/length", "content-length"), ("/chunked", "chunked"),
                                               ("/until-close", "chunked")])
def test_a_huge_answer_streams_whole_to_an_http11_client(proxy: MeshbatchProcess, path: str, framing: str) -> None:
    digest = hashlib.sha256()
    size = 0
    with httpx.Client(timeout=30) as client, client.stream("GET", proxy.url("main", path)) as response:
        assert response.status_code == 200
        if framing == "content-length":
            assert response.headers["content-length"] == str(BIG)
        else:
            assert response.headers["transfer-encoding"] == "chunked" and "content-length" not in response.headers
        for piece in response.iter_raw():
            digest.update(piece)
            size += len(piece)
    assert (size, digest.hexdigest()) == (BIG, DIGEST)


@pytest.mark.parametrize("path", ["/length", "/chunked"])
def test_a_huge_answer_streams_whole_to_an_http10_client(proxy: MeshbatchProcess, path: str) -> None:
    head, digest, size = read_raw(proxy, f"GET {path} HTTP/1.0\r\nHost: up\r\n\r\n".encode())
    assert head.startswith(b"HTTP/1.1 200")
    lowered = head.lower()
    assert b"transfer-encoding" not in lowered  # an HTTP/1.0 client cannot read chunks
    assert (b"content-length: %d" % BIG in lowered) == (path == "/length")
    assert (size, digest) == (BIG, DIGEST)


def test_head_204_and_304_keep_working(proxy: MeshbatchProcess) -> None:
    with httpx.Client(base_url=proxy.url("main"), timeout=10) as client:
        head = client.head("/length")
        assert head.status_code == 200 and head.content == b""
        empty = client.get("/no-content")
        assert (empty.status_code, empty.content, empty.headers["x-kind"]) == (204, b"", "204")
        cached = client.get("/not-modified")
        assert (cached.status_code, cached.content, cached.headers["etag"]) == (304, b"", '"e"')
        assert client.get("/small").content == b"ok"  # the connection is still good


def test_an_upstream_reset_mid_body_aborts_the_client(proxy: MeshbatchProcess) -> None:
    before = aborts(proxy, "upstream_reset")
    # never a clean end: a reset (or an incomplete chunked body), whatever the client reads with
    with httpx.Client(timeout=30) as client, pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)), \
            client.stream("GET", proxy.url("main", "/reset")) as response:
        assert response.status_code == 200
        for _ in response.iter_raw():
            pass
    with pytest.raises(ConnectionResetError):  # an HTTP/1.0 client reading to the close sees a reset, not an end
        read_raw(proxy, b"GET /reset HTTP/1.0\r\nHost: up\r\n\r\n")
    until(lambda: aborts(proxy, "upstream_reset") >= before + 2, 5, "the aborts were not counted")


def test_a_client_that_leaves_mid_body_drops_the_upstream_connection(proxy: MeshbatchProcess,
                                                                     upstream: HostileUpstream) -> None:
    with socket.create_connection(proxy.address("main"), timeout=10) as sock:
        sock.sendall(b"GET /chunked?leave=1 HTTP/1.1\r\nHost: up\r\n\r\n")
        got = 0
        while got < 2 * MIB:
            got += len(sock.recv(1 << 20))
    upstream.wait_closed(upstream.last("/chunked?leave=1").connection)


def test_a_pipelining_flood_of_large_bodies_is_bounded_in_bytes(proxy: MeshbatchProcess) -> None:
    release_held.clear()
    before = rss(proxy)
    body = b"b" * BODY_SIZE
    request = b"POST /flood HTTP/1.1\r\nHost: up\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    sent = 0
    sock = socket.create_connection(proxy.address("main"), timeout=30)
    sock.sendall(b"GET /held HTTP/1.1\r\nHost: up\r\n\r\n")

    def flood() -> None:
        nonlocal sent
        view = memoryview(request * 4)
        try:
            for _ in range(8):  # 32 requests of 8 MiB behind the held one
                offset = 0
                while offset < len(view):
                    offset += sock.send(view[offset:offset + MIB])
                    sent += MIB
        except OSError:
            pass

    writer = threading.Thread(target=flood, daemon=True)
    writer.start()
    last, steady_since, peak = -1, time.monotonic(), 0
    while time.monotonic() - steady_since < 1.0:  # until the client is held back (its sends block)
        peak = max(peak, rss(proxy))
        if sent != last:
            last, steady_since = sent, time.monotonic()
        if not writer.is_alive():
            break
        time.sleep(0.05)
    peak = max(peak, rss(proxy))
    assert sent < 100 * MIB, f"the proxy read {sent / MIB:.0f} MiB of requests it had not served"
    assert peak - before < 100 * MIB, f"RSS grew by {(peak - before) / MIB:.0f} MiB"
    release_held.set()  # now everything is served, in order, each request once
    reader = sock.makefile("rb")
    statuses = []
    for _ in range(33):
        status = reader.readline()
        headers = {}
        while (line := reader.readline()) != b"\r\n":
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        reader.read(int(headers["content-length"]))
        statuses.append(status.split()[1])
    writer.join(30)
    sock.close()
    assert statuses == [b"200"] * 33
