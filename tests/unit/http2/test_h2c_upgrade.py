"""h2c by Upgrade on a downstream connection (http/server.py -> http2/upgrade.py), over an in-memory transport:
the 101 then HTTP/2 with the request as stream 1, the client preface after it (in the same write too), garbage
instead of the preface, the HTTP/2 limits after the switch, and the listeners that do not switch."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame

from meshbatch.http.message import Request, Response
from meshbatch.http.server import HttpServerProtocol
from meshbatch.http.serving import Answer, ListenerState, Pending, ServerSettings
from meshbatch.http.upgrade import SWITCHING
from meshbatch.http2.limits import H2Limits
from meshbatch.http2.server import H2ServerProtocol
from testbed.h2peer import Answers, frame, parse_frames, request_headers
from testbed.transport import FakeTransport, connect

Seen = list[Request]


def dispatcher(seen: Seen) -> Any:
    def dispatch(request: Request, answer: Answer) -> Pending | None:
        seen.append(request)
        answer(Response(200, [(b"content-type", b"text/plain")], b"hello " + request.target + b" " + request.body))
        return None

    return dispatch


class Upgrading:
    """A client that upgrades: an HTTP/1.1 request with HTTP2-Settings, then HTTP/2 after the 101."""

    def __init__(self, codec: str = "auto", **settings: Any) -> None:
        self.seen: Seen = []
        self.state = ListenerState(ServerSettings(dispatch=dispatcher(self.seen), codec=codec, **settings))
        self.transport: FakeTransport = connect(HttpServerProtocol(self.state, asyncio.get_running_loop()))
        self.client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self.header = self.client.initiate_upgrade_connection()
        self.answers = Answers()
        self._at = 0  # the HTTP/2 output read so far

    def head(self, method: bytes = b"GET", extra: bytes = b"") -> bytes:
        return (method + b" /up HTTP/1.1\r\nHost: test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                b"HTTP2-Settings: " + self.header + b"\r\n" + extra + b"\r\n")

    def send(self, data: bytes) -> None:
        protocol = self.transport.protocol
        assert isinstance(protocol, asyncio.Protocol)
        protocol.data_received(data)

    @property
    def server(self) -> H2ServerProtocol:
        protocol = self.transport.protocol
        assert isinstance(protocol, H2ServerProtocol)
        return protocol

    def h2_output(self) -> bytes:
        self.server.write_pending()
        data = self.transport.data
        assert data.startswith(SWITCHING)
        return data[len(SWITCHING):]

    def read(self) -> None:
        data = self.h2_output()
        events = self.client.receive_data(data[self._at:])
        self._at = len(data)
        self.answers.take(self.client, events)


async def test_upgrade_switches_and_answers_stream_1_over_http2() -> None:
    peer = Upgrading()
    peer.send(peer.head() + peer.client.data_to_send())  # the preface right behind the request, as curl may not
    peer.read()
    assert peer.answers.status[1] == 200 and peer.answers.body[1] == b"hello /up "
    assert 1 in peer.answers.ended
    assert [r.target for r in peer.seen] == [b"/up"]
    assert peer.state.upgrades == 1 and peer.server in peer.state.connections and len(peer.state.connections) == 1
    # and the connection goes on as HTTP/2: stream 3
    peer.client.send_headers(3, request_headers("/next"), end_stream=True)
    peer.send(peer.client.data_to_send())
    peer.read()
    assert peer.answers.body[3] == b"hello /next "


async def test_upgrade_with_a_body_makes_it_stream_1s_body() -> None:
    peer = Upgrading()
    peer.send(peer.head(b"POST", b"Content-Length: 4\r\n") + b"da")
    assert peer.transport.data == b""  # the body is read before the 101
    peer.send(b"ta")
    peer.send(peer.client.data_to_send())
    peer.read()
    assert peer.answers.body[1] == b"hello /up data"


async def test_garbage_instead_of_the_preface_closes_with_goaway() -> None:
    peer = Upgrading()
    peer.send(peer.head())
    peer.send(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
    goaways = [f for f in parse_frames(peer.h2_output()) if isinstance(f, GoAwayFrame)]
    assert peer.transport.closing
    assert not goaways or goaways[0].error_code == ErrorCodes.PROTOCOL_ERROR
    assert peer.state.aborts.get("h2_protocol_error") == 1


async def test_http2_limits_apply_after_the_switch() -> None:
    peer = Upgrading(http2=H2Limits(max_pings=3))
    peer.send(peer.head() + peer.client.data_to_send())
    peer.send(b"".join(frame(0x6, 0, 0, b"12345678") for _ in range(5)))  # a PING flood
    goaways = [f for f in parse_frames(peer.h2_output()) if isinstance(f, GoAwayFrame)]
    assert goaways[-1].error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert peer.state.aborts.get("h2_ping_flood") == 1


@pytest.mark.parametrize("codec", ["http1"])
async def test_http1_listener_ignores_the_upgrade(codec: str) -> None:
    peer = Upgrading(codec=codec)
    peer.send(peer.head() + b"GET /two HTTP/1.1\r\nHost: test\r\n\r\n")
    await asyncio.sleep(0)
    data = peer.transport.data
    assert data.startswith(b"HTTP/1.1 200") and b"101" not in data.split(b"\r\n")[0]
    assert data.count(b"HTTP/1.1 200") == 2 and b"hello /two" in data
    assert isinstance(peer.transport.protocol, HttpServerProtocol) and peer.state.upgrades == 0


async def test_tls_connection_ignores_the_upgrade() -> None:
    class Tls(FakeTransport):
        def get_extra_info(self, name: str, default: Any = None) -> Any:
            return object() if name == "ssl_object" else super().get_extra_info(name, default)

    seen: Seen = []
    state = ListenerState(ServerSettings(dispatch=dispatcher(seen)))
    protocol = HttpServerProtocol(state, asyncio.get_running_loop())
    transport = Tls(protocol)
    protocol.connection_made(transport)  # type: ignore[arg-type]
    peer = Upgrading()
    protocol.data_received(peer.head())
    assert transport.data.startswith(b"HTTP/1.1 200") and state.upgrades == 0


async def test_bad_settings_are_400_over_http1() -> None:
    peer = Upgrading()
    peer.send(peer.head().replace(peer.header, b"AAMAAABkA"))
    assert peer.transport.data.startswith(b"HTTP/1.1 400") and b"bad_http2_settings" in peer.transport.data
    assert isinstance(peer.transport.protocol, HttpServerProtocol) and peer.transport.closing


async def test_draining_listener_answers_over_http1() -> None:
    peer = Upgrading()
    peer.state.draining = True
    peer.send(peer.head())
    assert peer.transport.data.startswith(b"HTTP/1.1 200") and peer.state.upgrades == 0


async def test_pipelined_request_before_the_upgrade_is_answered_first_in_http1() -> None:
    peer = Upgrading()
    peer.send(b"GET /first HTTP/1.1\r\nHost: test\r\n\r\n" + peer.head() + peer.client.data_to_send())
    data = peer.transport.data
    first, _, rest = data.partition(SWITCHING)
    assert first.startswith(b"HTTP/1.1 200") and b"hello /first" in first
    peer.transport.written = [SWITCHING + rest]
    peer.read()
    assert peer.answers.body[1] == b"hello /up "
