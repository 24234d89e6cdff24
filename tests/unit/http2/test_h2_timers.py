"""The HTTP/2 connection's one timer on a fake clock: a preface or a header block that stops arriving, a request
body that stalls, an idle connection, answers that wait for window credit that never comes."""

from __future__ import annotations

from typing import Any

from hyperframe.frame import GoAwayFrame

from meshbatch.http.message import Request, Response
from meshbatch.http.serving import Answer, Pending
from testbed.h2peer import PREFACE, FakeTimers, H2Pair, frame, parse_frames, request_headers


def echo(request: Request, answer: Answer) -> Pending | None:
    answer(Response(200, [], b"x" * 100_000 if request.path == b"/big" else b"ok"))
    return None


def pair(**settings: Any) -> tuple[H2Pair, FakeTimers]:
    timers = FakeTimers()
    return H2Pair(echo, timers, header_timeout=5.0, idle_timeout=60.0, send_timeout=30.0, **settings), timers


def goaway_codes(peer: H2Pair) -> list[int]:
    return [f.error_code for f in parse_frames(peer.transport.data) if isinstance(f, GoAwayFrame)]


async def test_a_preface_that_never_comes_is_closed_after_the_header_timeout() -> None:
    peer, timers = pair()
    peer.raw(PREFACE[:10])
    timers.advance(4.9)
    assert not peer.transport.closing
    timers.advance(0.2)
    assert peer.transport.closing and peer.state.aborts == {"header_timeout": 1}


async def test_a_header_block_left_open_is_closed_after_the_header_timeout() -> None:
    peer, timers = pair()
    peer.flush()  # preface and SETTINGS
    timers.advance(30.0)  # idle, but settled: nothing to time out yet
    assert not peer.transport.closing
    peer.raw(frame(0x1, 0x0, 1, b"\x82"))  # HEADERS without END_HEADERS
    timers.advance(5.1)
    assert peer.transport.closing and peer.state.aborts == {"header_timeout": 1}
    assert goaway_codes(peer) == [0xB]  # ENHANCE_YOUR_CALM


async def test_a_stalled_request_body_is_a_408_on_its_stream() -> None:
    peer, timers = pair()
    peer.flush()
    sid = peer.client.get_next_available_stream_id()
    peer.client.send_headers(sid, request_headers("/upload", "POST"))
    peer.client.send_data(sid, b"part")
    peer.flush()
    timers.advance(59.0)
    assert sid not in peer.answers.status
    other = peer.request("/other")  # activity on another stream does not keep a stalled one alive
    timers.advance(1.5)
    peer.pull()
    assert peer.answers.status[sid] == 408 and peer.answers.status[other] == 200
    assert not peer.transport.closing


async def test_an_idle_connection_is_closed_with_goaway() -> None:
    peer, timers = pair()
    peer.flush()
    peer.request("/one")
    timers.advance(59.0)
    assert not peer.transport.closing
    timers.advance(1.5)
    assert peer.transport.closing and goaway_codes(peer) == [0]


async def test_an_answer_stalled_on_a_shut_window_aborts_after_the_send_timeout() -> None:
    peer, timers = pair()
    peer.flush()
    peer.client.acknowledge_received_data = lambda *a, **k: None  # type: ignore[method-assign]
    sid = peer.request("/big")  # 100 KB against the client's 64 KB window, which it never opens again
    assert sid not in peer.answers.ended
    timers.advance(29.0)
    assert not peer.transport.closing
    timers.advance(2.0)
    assert peer.transport.closing and peer.state.aborts == {"h2_zero_window": 1}
