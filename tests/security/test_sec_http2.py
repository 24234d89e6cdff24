"""HTTP/2's attacks against a running proxy, each from a raw client: the connection is closed with GOAWAY and the
right error code, the listener's counter moves (`meshbatch_downstream_aborts_total{reason=...}`), and the proxy
goes on serving everyone else. The limits are tight here so that each attack is short; docs/security.md has the
defaults and why."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from h2.errors import ErrorCodes
from hpack import Encoder

from testbed.config import cluster, config, listener, route
from testbed.h2peer import Answers, H2Socket, frame
from testbed.proxy import MeshbatchProcess, metric_value
from testbed.upstream import UpstreamServer

HEADERS, PRIORITY, RST_STREAM, SETTINGS, PING, CONTINUATION, DATA = 0x1, 0x2, 0x3, 0x4, 0x6, 0x9, 0x0
END_STREAM, END_HEADERS = 0x1, 0x4

LIMITS = {"max_resets": 20, "max_settings": 10, "max_pings": 10, "max_empty_frames": 5, "window_ms": 60_000}


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, upstreams: dict[str, UpstreamServer]) -> MeshbatchProcess:
    guarded = listener("guarded", [route("all", "echo")], {"max_header_bytes": 4096, "send_timeout_ms": 300},
                       http2=LIMITS)
    process: MeshbatchProcess = module_mesh.start(config([guarded], [cluster("echo", upstreams["a"].address)]))
    return process


def aborts(proxy: MeshbatchProcess, reason: str) -> float:
    text = httpx.get(proxy.url("admin", "/metrics"), timeout=5).text
    return metric_value(text, "meshbatch_downstream_aborts_total", listener="guarded", reason=reason)


def block(fields: list[tuple[bytes, bytes]]) -> bytes:
    return bytes(Encoder().encode(fields))


GET = [(b":method", b"GET"), (b":path", b"/x"), (b":scheme", b"http"), (b":authority", b"test")]


def attacked(proxy: MeshbatchProcess, reason: str, attack: Callable[[H2Socket], None],
             code: int = ErrorCodes.ENHANCE_YOUR_CALM, window: int | None = None) -> Answers:
    before = aborts(proxy, reason)
    with H2Socket(proxy.address("guarded"), window=window) as h2:
        attack(h2)
        answers = h2.read_until(lambda a: a.goaway is not None, timeout=5)
        assert answers.goaway is not None, answers.events
        assert answers.goaway.error_code == code
        assert h2.read_until(lambda a: False).events is not None and h2.closed  # and then the connection closes
    assert aborts(proxy, reason) == before + 1
    still_serving(proxy)
    return answers


def still_serving(proxy: MeshbatchProcess) -> None:
    with httpx.Client(http1=False, http2=True, base_url=proxy.url("guarded"), timeout=5) as client:
        assert client.get("/after").status_code == 200


def test_rapid_reset(proxy: MeshbatchProcess) -> None:
    def attack(h2: H2Socket) -> None:
        raw = b""
        for i in range(30):  # open and cancel at once, more than max_resets (20) in the window
            sid = 2 * i + 1
            raw += frame(HEADERS, END_HEADERS, sid, block(GET)) + frame(RST_STREAM, 0, sid, struct.pack(">I", 8))
        h2.send(raw)

    attacked(proxy, "h2_rapid_reset", attack)


def test_continuation_flood(proxy: MeshbatchProcess) -> None:
    def attack(h2: H2Socket) -> None:
        raw = frame(HEADERS, 0, 1, block(GET))  # no END_HEADERS: the block goes on and on
        for _ in range(40):
            raw += frame(CONTINUATION, 0, 1, b"\x00" * 1000)
        h2.send(raw)

    attacked(proxy, "h2_continuation_flood", attack)


def test_hpack_bomb(proxy: MeshbatchProcess) -> None:
    def attack(h2: H2Socket) -> None:
        encoder = Encoder()
        first = bytes(encoder.encode([*GET, (b"x-bomb", b"a" * 3000)], huffman=True))  # into the dynamic table
        # ... then referenced by its one-byte index: 3 KB of decoded header per byte sent
        bomb = bytes(encoder.encode(GET)) + bytes([0x80 | 62]) * 400
        h2.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, first) + frame(HEADERS, END_HEADERS | END_STREAM, 3, bomb))

    attacked(proxy, "h2_hpack_bomb", attack)


def test_settings_flood(proxy: MeshbatchProcess) -> None:
    attacked(proxy, "h2_settings_flood", lambda h2: h2.send(frame(SETTINGS, 0, 0) * 30))


def test_ping_flood(proxy: MeshbatchProcess) -> None:
    attacked(proxy, "h2_ping_flood", lambda h2: h2.send(frame(PING, 0, 0, b"\0" * 8) * 30))


def test_empty_data_flood(proxy: MeshbatchProcess) -> None:
    post = [(b":method", b"POST"), (b":path", b"/x"), (b":scheme", b"http"), (b":authority", b"test")]
    attacked(proxy, "h2_empty_data_flood",
             lambda h2: h2.send(frame(HEADERS, END_HEADERS, 1, block(post)) + frame(DATA, 0, 1) * 20))


def test_zero_window_stall(proxy: MeshbatchProcess) -> None:
    def attack(h2: H2Socket) -> None:
        h2.request("/big", "POST", b"q" * 2000)  # an answer with a body, to a client that grants no window

    attacked(proxy, "h2_zero_window", attack, code=ErrorCodes.FLOW_CONTROL_ERROR, window=0)


def test_protocol_errors(proxy: MeshbatchProcess) -> None:
    # DATA on stream 0 is a connection error (RFC 9113 6.1)
    attacked(proxy, "h2_protocol_error", lambda h2: h2.send(frame(DATA, 0, 0, b"x")), code=ErrorCodes.PROTOCOL_ERROR)


def test_too_large_headers_are_a_431_not_a_closed_connection(proxy: MeshbatchProcess) -> None:
    with H2Socket(proxy.address("guarded")) as h2:
        sid = h2.request("/big-head", extra=[("x-big", "v" * 5000)])
        ok = h2.request("/fine")
        answers = h2.read_until(lambda a: sid in a.ended and ok in a.ended)
    assert answers.status[sid] == 431 and answers.status[ok] == 200
