"""The downstream connection's state machine driven with bytes only (no socket, no loop; a fake clock): every
transition, refused ones, pipelining, the keep-alive decision, 100-continue, HEAD, upgrades, limits and
timeouts."""

from __future__ import annotations

import pytest

from meshbatch.clock import FakeClock
from meshbatch.errors import UpstreamReset
from meshbatch.http.message import Response
from meshbatch.http.parser import ParserLimits, RequestParser
from meshbatch.http.server_machine import (
    CLOSED,
    CONTINUE,
    DISPATCHED,
    EXPIRED_ERROR,
    EXPIRED_IDLE,
    IDLE,
    MUST_CLOSE,
    RECEIVING,
    SENDING,
    STATE_NAMES,
    TRANSITIONS,
    IllegalTransition,
    ServerConnection,
)
from meshbatch.http.serving import ServerSettings
from meshbatch.http.stream import BodyStream

GET = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
SETTINGS = ServerSettings(dispatch=lambda request, answer: None, header_timeout=10.0, idle_timeout=60.0,
                          request_id_in_response=False)


def machine(limits: ParserLimits | None = None, clock: FakeClock | None = None) -> ServerConnection:
    now = clock.now() if clock is not None else 0.0
    return ServerConnection(RequestParser(limits or ParserLimits(), "10.0.0.1"), SETTINGS, now)


def ok(body: bytes = b"ok") -> Response:
    return Response(200, [(b"content-type", b"text/plain")], body)


class Source:
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def abandon(self) -> None: ...


def streamed(length: int) -> Response:
    response = Response(200, [])
    response.stream = BodyStream(Source(), length, 1 << 20)
    return response


# the transition table ------------------------------------------------------------------------------------
def test_the_table_names_each_state_and_closes_from_every_state() -> None:
    closes = {state for (state, event), to in TRANSITIONS.items() if to == CLOSED}
    assert closes == set(range(len(STATE_NAMES)))


@pytest.mark.parametrize("state", range(len(STATE_NAMES)))
@pytest.mark.parametrize("event", range(10))
def test_an_event_the_table_does_not_list_is_refused(state: int, event: int) -> None:
    conn = machine()
    conn.state = state
    if (state, event) in TRANSITIONS:
        conn._go(event)
        assert conn.state == TRANSITIONS[state, event]
    else:
        with pytest.raises(IllegalTransition):
            conn._go(event)
        assert conn.state == state


def test_answering_with_no_request_served_and_ending_no_stream_are_refused() -> None:
    conn = machine()
    with pytest.raises(IllegalTransition):
        conn.answer(ok(), False, 0.0)
    with pytest.raises(IllegalTransition):
        conn.stream_end(False, 0.0)
    with pytest.raises(IllegalTransition):
        conn.take(SETTINGS)  # nothing waits
    conn.receive(GET + GET, 0.0)
    conn.take(SETTINGS)
    with pytest.raises(IllegalTransition):
        conn.take(SETTINGS)  # one at a time, even with another waiting


# one request after another ----------------------------------------------------------------------------
def test_a_request_read_in_pieces_is_received_then_dispatched_then_answered() -> None:
    conn = machine()
    assert conn.state == IDLE and not conn.busy
    assert conn.receive(GET[:10], 1.0)  # a head began: the header timeout runs
    assert conn.state == RECEIVING and conn.busy and not conn.due()
    assert not conn.receive(GET[10:], 2.0)
    assert conn.state == IDLE and conn.due()
    request = conn.take(SETTINGS)
    assert conn.state == DISPATCHED and conn.serves(request) and request.path == b"/a"
    data = conn.answer(ok(), False, 3.0)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"connection: close" not in data.lower()
    assert conn.state == IDLE and not conn.serves(request) and not conn.busy


@pytest.mark.parametrize(("raw", "draining"), [
    (b"GET / HTTP/1.0\r\n\r\n", False),  # HTTP/1.0 without keep-alive
    (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", False),
    (GET, True),  # the listener drains
])
def test_an_answer_that_ends_the_connection_says_so_and_leaves_it_to_close(raw: bytes, draining: bool) -> None:
    conn = machine()
    conn.receive(raw, 0.0)
    conn.take(SETTINGS)
    data = conn.answer(ok(), draining, 0.0)
    assert b"connection: close" in data.lower()
    assert conn.state == MUST_CLOSE and conn.must_close() and not conn.due()
    conn.receive(GET, 1.0)  # nothing more is read
    assert not conn.parser.ready


def test_http10_keep_alive_is_kept() -> None:
    conn = machine()
    conn.receive(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 0.0)
    conn.take(SETTINGS)
    assert b"connection: close" not in conn.answer(ok(), False, 0.0).lower()
    assert conn.state == IDLE


def test_an_answer_to_head_has_its_length_and_no_body() -> None:
    conn = machine()
    conn.receive(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", 0.0)
    conn.take(SETTINGS)
    data = conn.answer(ok(b"12345"), False, 0.0)
    assert b"content-length: 5\r\n" in data.lower() and data.endswith(b"\r\n\r\n")


# pipelining -------------------------------------------------------------------------------------------------
def test_pipelined_requests_wait_and_are_answered_in_order() -> None:
    conn = machine()
    conn.receive(GET.replace(b"/a", b"/1") + GET.replace(b"/a", b"/2") + GET[:8], 0.0)
    first = conn.take(SETTINGS)
    assert first.path == b"/1" and not conn.due()  # the second waits while the first is served
    conn.answer(ok(), False, 0.0)
    assert conn.state == RECEIVING and conn.due()  # a third is half-read, the second is due
    assert conn.take(SETTINGS).path == b"/2"
    conn.answer(ok(), False, 0.0)
    assert conn.state == RECEIVING and not conn.due()
    conn.receive(GET[8:], 1.0)
    assert conn.due()


def test_a_protocol_error_is_answered_after_the_requests_read_before_it() -> None:
    conn = machine()
    conn.receive(GET + b"BAD REQUEST\r\n\r\n", 0.0)
    assert conn.error is not None and conn.due() and not conn.error_due()
    conn.take(SETTINGS)
    data = conn.answer(ok(), False, 0.0)
    assert b"connection: close" not in data.lower()  # the error, not the answer, says close
    assert conn.error_due()
    response, data = conn.error_reply()
    assert response.status == 400 and data.startswith(b"HTTP/1.1 400") and b"connection: close" in data.lower()
    assert conn.state == MUST_CLOSE and not conn.error_due()


@pytest.mark.parametrize(("raw", "status", "reason"), [
    (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", 400, "upgrade_not_supported"),
    (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400, None),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 300 + b"\r\n\r\n", 431, "headers_too_large"),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 500\r\n\r\n", 413, "body_too_large"),
    (b"GET / HTTP/1.1\r\n\r\n", 400, "missing_host"),
])
def test_malformed_or_oversized_input_is_refused_with_its_status(raw: bytes, status: int, reason: str | None) -> None:
    conn = machine(ParserLimits(max_header_bytes=256, max_body_bytes=100))
    conn.receive(raw, 0.0)
    assert conn.error is not None and conn.error.status == status
    assert reason is None or conn.error.reason == reason
    assert conn.error_due() and not conn.due()  # an upgrade request is never served
    assert conn.error_reply()[0].status == status


# 100-continue -----------------------------------------------------------------------------------------------
EXPECTING = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"


def test_100_continue_is_due_once_when_the_head_is_read() -> None:
    conn = machine()
    conn.receive(EXPECTING, 0.0)
    assert conn.continue_due() and not conn.continue_due()
    assert CONTINUE == b"HTTP/1.1 100 Continue\r\n\r\n"
    conn.receive(b"hi", 1.0)
    assert conn.take(SETTINGS).body == b"hi"


def test_100_continue_waits_for_the_answers_before_it() -> None:
    conn = machine()
    conn.receive(GET, 0.0)
    conn.take(SETTINGS)
    conn.receive(EXPECTING, 0.0)
    assert not conn.continue_due()
    conn.answer(ok(), False, 0.0)
    assert conn.continue_due()


# streamed answers -------------------------------------------------------------------------------------------
def test_a_body_of_unknown_length_is_chunked_for_http11_and_the_connection_stays() -> None:
    conn = machine()
    conn.receive(GET, 0.0)
    conn.take(SETTINGS)
    head = conn.answer(streamed(-1), False, 0.0)
    assert b"transfer-encoding: chunked" in head.lower() and conn.state == SENDING and conn.busy
    assert conn.stream_data(b"abc") == b"3\r\nabc\r\n"
    assert conn.stream_end(False, 1.0) == b"0\r\n\r\n"
    assert conn.state == IDLE


@pytest.mark.parametrize(("te", "end"), [
    (b"te: trailers\r\n", b"0\r\ngrpc-status: 0\r\nx-sum: 42\r\n\r\n"),  # asked for: the trailer section
    (b"", b"0\r\n\r\n"),  # not asked for: none
])
def test_a_streamed_answers_trailers_reach_an_http11_caller_that_asks(te: bytes, end: bytes) -> None:
    conn = machine()
    conn.receive(b"GET / HTTP/1.1\r\nhost: a\r\n" + te + b"\r\n", 0.0)
    conn.take(SETTINGS)
    conn.answer(streamed(-1), False, 0.0)
    assert conn.stream_end(False, 1.0, [(b"grpc-status", b"0"), (b"x-sum", b"42")]) == end


def test_a_body_of_unknown_length_ends_an_http10_connection() -> None:
    conn = machine()
    conn.receive(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 0.0)
    conn.take(SETTINGS)
    head = conn.answer(streamed(-1), False, 0.0)
    assert b"connection: close" in head.lower()
    assert conn.stream_data(b"abc") == b"abc"
    assert conn.stream_end(False, 1.0) == b""
    assert conn.state == MUST_CLOSE


def test_a_stream_that_failed_before_its_head_is_answered_with_a_status() -> None:
    conn = machine()
    conn.receive(GET, 0.0)
    conn.take(SETTINGS)
    response = streamed(10)
    assert response.stream is not None
    response.stream.fail(UpstreamReset("upstream_reset"))
    assert conn.answer(response, False, 0.0).startswith(b"HTTP/1.1 502")
    assert conn.state == IDLE


def test_draining_during_a_stream_closes_after_it() -> None:
    conn = machine()
    conn.receive(GET, 0.0)
    conn.take(SETTINGS)
    conn.answer(streamed(3), False, 0.0)
    conn.stream_end(True, 0.0)
    assert conn.state == MUST_CLOSE


# half-close -------------------------------------------------------------------------------------------------
def test_a_half_closed_client_gets_its_pending_answers_then_the_connection_closes() -> None:
    conn = machine()
    conn.receive(GET + GET, 0.0)
    conn.take(SETTINGS)
    assert not conn.half_closed()
    conn.answer(ok(), False, 0.0)
    assert conn.due()
    conn.take(SETTINGS)
    conn.answer(ok(), False, 0.0)
    assert conn.state == MUST_CLOSE


def test_a_half_closed_idle_or_half_read_connection_closes_at_once() -> None:
    for data in (b"", GET[:5]):
        conn = machine()
        conn.receive(data, 0.0)
        assert conn.half_closed() and conn.state == MUST_CLOSE


# timeouts on a fake clock -----------------------------------------------------------------------------------
def test_a_head_not_received_in_time_is_a_header_timeout() -> None:
    clock = FakeClock()  # (its time starts at 1000)
    conn = machine(clock=clock)
    assert conn.receive(GET[:5], clock.now())
    clock.advance(9.0)
    assert conn.expire(clock.now()) == 1010.0  # dripping bytes does not move the deadline
    conn.receive(GET[5:8], clock.now())
    clock.advance(1.0)
    assert conn.expire(clock.now()) == EXPIRED_ERROR
    assert conn.error is not None and conn.error.reason == "header_timeout" and conn.error_due()


def test_a_body_that_stops_arriving_is_a_body_timeout() -> None:
    clock = FakeClock()  # (its time starts at 1000)
    conn = machine(clock=clock)
    conn.receive(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab", clock.now())
    clock.advance(30.0)
    assert conn.expire(clock.now()) == 1060.0
    clock.advance(60.0)
    assert conn.expire(clock.now()) == EXPIRED_ERROR
    assert conn.error is not None and conn.error.reason == "body_timeout"


def test_an_idle_connection_times_out_but_a_busy_one_does_not() -> None:
    clock = FakeClock()  # (its time starts at 1000)
    conn = machine(clock=clock)
    conn.receive(GET, clock.now())
    conn.take(SETTINGS)
    clock.advance(100.0)
    assert conn.expire(clock.now()) == 1160.0  # the request's own timeouts apply
    conn.answer(ok(), False, clock.now())
    clock.advance(59.0)
    assert conn.expire(clock.now()) == 1160.0
    clock.advance(1.0)
    assert conn.expire(clock.now()) == EXPIRED_IDLE and conn.state == MUST_CLOSE


def test_a_closed_connection_reads_nothing_and_needs_no_timer() -> None:
    conn = machine()
    conn.receive(GET, 0.0)
    conn.take(SETTINGS)
    conn.closed()
    assert conn.state == CLOSED and conn.current is None
    assert not conn.receive(GET, 1.0) and conn.expire(1000.0) == 0.0
