"""Which protocol a new connection gets, by the listener's codec: the HTTP/2 preface detected beside HTTP/1.1 (in
pieces too), a partial preface held within the header timeout, ALPN over TLS deciding at once."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from meshbatch.http.message import Request, Response
from meshbatch.http.server import HttpServerProtocol
from meshbatch.http.serving import Answer, ListenerState, Pending, ServerSettings
from meshbatch.http2.accept import CodecSelector, alpn_protocols, protocol_factory
from meshbatch.http2.server import H2ServerProtocol
from testbed.h2peer import PREFACE, FakeTimers
from testbed.transport import FakeTransport


def echo(request: Request, answer: Answer) -> Pending | None:
    answer(Response(200, [], b"ok"))
    return None


class Tls(FakeTransport):
    def __init__(self, alpn: str | None) -> None:
        super().__init__()
        self.alpn = alpn

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            outer = self

            class SslObject:
                def selected_alpn_protocol(self) -> str | None:
                    return outer.alpn

            return SslObject()
        return super().get_extra_info(name, default)


def selector(codec: str = "auto", transport: FakeTransport | None = None,
             timers: FakeTimers | None = None) -> tuple[CodecSelector, FakeTransport, ListenerState]:
    state = ListenerState(ServerSettings(dispatch=echo, codec=codec, header_timeout=5.0, idle_timeout=60.0))
    loop = cast(asyncio.AbstractEventLoop, timers or FakeTimers())
    protocol = CodecSelector(state, loop, codec)
    transport = transport or FakeTransport()
    transport.protocol = protocol
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return protocol, transport, state


async def test_http1_is_recognised_at_its_first_bytes() -> None:
    for first in (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"P", b"POST"):
        protocol, transport, state = selector()
        protocol.data_received(first)
        if first == b"P":
            assert transport.protocol is protocol  # could still be the preface
            protocol.data_received(b"UT / HTTP/1.1\r\n")
        assert isinstance(transport.protocol, HttpServerProtocol)
        assert protocol not in state.connections and transport.protocol in state.connections


async def test_the_preface_in_pieces_becomes_http2() -> None:
    protocol, transport, state = selector()
    for i in range(len(PREFACE)):
        assert transport.protocol is protocol
        protocol.data_received(PREFACE[i:i + 1])
    assert isinstance(transport.protocol, H2ServerProtocol) and transport.protocol in state.connections
    assert transport.data[3] == 0x4  # the server's SETTINGS


async def test_a_partial_preface_is_closed_after_the_header_timeout() -> None:
    timers = FakeTimers()
    protocol, transport, _ = selector(timers=timers)
    protocol.data_received(PREFACE[:5])
    timers.advance(4.9)
    assert not transport.closing
    timers.advance(0.2)
    assert transport.closing


async def test_a_silent_connection_is_closed_after_the_idle_timeout_and_on_drain() -> None:
    timers = FakeTimers()
    _, transport, _ = selector(timers=timers)
    timers.advance(59.0)
    assert not transport.closing
    timers.advance(1.5)
    assert transport.closing
    _, transport, state = selector(timers=FakeTimers())
    state.drain()
    assert transport.closing


async def test_codecs_and_alpn() -> None:
    assert alpn_protocols("auto") == ["h2", "http/1.1"] and alpn_protocols("http2") == ["h2"]
    assert alpn_protocols("http1") == ["http/1.1"]
    _, transport, _ = selector("auto", Tls("h2"))
    assert isinstance(transport.protocol, H2ServerProtocol)
    _, transport, _ = selector("auto", Tls("http/1.1"))
    assert isinstance(transport.protocol, HttpServerProtocol)
    _, transport, _ = selector("http2")
    assert isinstance(transport.protocol, H2ServerProtocol)
    state = ListenerState(ServerSettings(dispatch=echo, codec="http1"))
    assert isinstance(protocol_factory(state, asyncio.get_running_loop())(), HttpServerProtocol)


def config_text(*extra: str) -> str:
    lines = ["listeners:", "  - name: main", "    listen: 127.0.0.1:0", *(f"    {line}" for line in extra),
             "    routes: [{name: a, cluster: c}]", 'clusters: [{name: c, endpoints: ["127.0.0.1:9"]}]']
    return "\n".join(lines) + "\n"


def test_the_codec_and_http2_keys_in_the_config() -> None:
    from meshbatch.config import ConfigError, parse
    from meshbatch.runtime.app import h2_limits

    listener = parse(config_text("limits: {max_header_bytes: 4096}")).listeners[0]
    assert listener.codec == "auto"
    limits = h2_limits(listener)
    assert (limits.max_concurrent_streams, limits.max_header_list_size, limits.window) == (100, 4096, 10.0)
    assert parse(config_text("codec: http2")).listeners[0].codec == "http2"
    with pytest.raises(ConfigError) as info:
        parse(config_text("codec: h3", "http2: {max_concurrent_streams: 0, windw_ms: 5}"))
    assert [str(p) for p in info.value.problems] == [
        "listeners[0].codec: must be 'auto', 'http1' or 'http2'",
        "listeners[0].http2.max_concurrent_streams: must be >= 1",
        "listeners[0].http2.windw_ms: unknown key; did you mean 'window_ms'?"]
