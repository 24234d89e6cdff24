"""The upstream connection's state machine driven with bytes only: every transition, refused ones, framing, the
reuse rules that keep us and the upstream at the same message boundary (desync), streaming and failures."""

from __future__ import annotations

import pytest

from meshbatch.http.client_machine import (
    CLOSED,
    DATA,
    ENDED,
    FAILED,
    IDLE,
    MUST_CLOSE,
    NOTHING,
    STARTED,
    STATE_NAMES,
    TRANSITIONS,
    UNASKED,
    IllegalTransition,
    ResponseReader,
)

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\n\r\nok"
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"


def reader(head: bool = False, stream_limit: int = 0, max_bytes: int = 1 << 20) -> ResponseReader:
    machine = ResponseReader(max_bytes)
    machine.start(head, stream_limit)
    return machine


# the transition table ------------------------------------------------------------------------------------
@pytest.mark.parametrize("state", range(len(STATE_NAMES)))
@pytest.mark.parametrize("event", range(8))
def test_an_event_the_table_does_not_list_is_refused(state: int, event: int) -> None:
    machine = ResponseReader(100)
    machine.state = state
    if (state, event) in TRANSITIONS:
        machine._go(event)
        assert machine.state == TRANSITIONS[state, event]
    else:
        with pytest.raises(IllegalTransition):
            machine._go(event)


def test_a_request_goes_out_only_on_an_idle_connection() -> None:
    machine = reader()
    with pytest.raises(IllegalTransition):
        machine.start(False)  # one exchange at a time
    assert machine.feed(OK + b"X", 0) == ENDED and machine.state == MUST_CLOSE
    with pytest.raises(IllegalTransition):
        machine.start(False)  # a single-use connection takes no second request


# whole answers ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("answer", [OK, CHUNKED])
def test_an_answer_in_one_piece_or_byte_by_byte_ends_at_a_boundary(answer: bytes) -> None:
    for pieces in ([answer], [answer[i:i + 1] for i in range(len(answer))]):
        machine = reader()
        events = [machine.feed(piece, 0) for piece in pieces]
        assert events[-1] == ENDED and set(events[:-1]) <= {NOTHING}
        assert machine.reusable and machine.state == IDLE
        response = machine.response()
        assert (response.status, response.body) == (200, b"ok")


def test_hop_by_hop_headers_and_those_named_in_connection_are_dropped() -> None:
    machine = reader()
    machine.feed(b"HTTP/1.1 200 OK\r\nConnection: x-hop\r\nX-Hop: 1\r\nKeep-Alive: t=1\r\nX-End: 2\r\n"
                 b"Content-Length: 0\r\n\r\n", 0)
    assert machine.response().headers == [(b"x-end", b"2")]


def test_an_answer_without_framing_ends_when_the_upstream_closes_and_is_single_use() -> None:
    machine = reader()
    assert machine.feed(b"HTTP/1.1 200 OK\r\n\r\nall of it", 0) == NOTHING
    assert machine.eof() == ENDED and machine.state == MUST_CLOSE and not machine.reusable
    assert machine.response().body == b"all of it"


@pytest.mark.parametrize(("data", "detail"), [
    (b"", "before any response"),
    (b"HTTP/1.1 200 OK\r\nContent-", "mid-response"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", "mid-response"),
])
def test_a_close_before_the_answer_ends_is_a_reset(data: bytes, detail: str) -> None:
    machine = reader()
    if data:
        machine.feed(data, 0)
    assert machine.eof() == FAILED and machine.state == CLOSED
    assert machine.error is not None and machine.error.reason == "upstream_reset" and detail in machine.error.detail


# the reuse rules (desync) --------------------------------------------------------------------------------
@pytest.mark.parametrize("after", [b"H", b"\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", b"garbage"])
@pytest.mark.parametrize("answer", [OK, CHUNKED])
def test_bytes_after_the_answer_make_the_connection_single_use(answer: bytes, after: bytes) -> None:
    machine = reader()
    assert machine.feed(answer + after, 0) == ENDED
    assert machine.state == MUST_CLOSE and not machine.reusable
    assert machine.response().body == b"ok"  # the answer itself stands


def test_bytes_after_the_answer_in_a_later_read_are_unasked() -> None:
    machine = reader()
    machine.feed(OK, 0)
    assert machine.reusable
    assert machine.feed(b"\r\n", 0) == UNASKED and machine.state == CLOSED and not machine.keep_alive


def test_an_answer_that_starts_before_the_request_was_all_sent_is_single_use() -> None:
    machine = reader()
    assert machine.feed(OK, 10) == ENDED and not machine.reusable


@pytest.mark.parametrize(("interim", "reusable"), [(b"100 Continue", True), (b"102 Processing", False),
                                                   (b"103 Early Hints", False)])
def test_only_a_100_interim_answer_keeps_the_connection_reusable(interim: bytes, reusable: bool) -> None:
    machine = reader()
    assert machine.feed(b"HTTP/1.1 " + interim + b"\r\n\r\n", 0) == NOTHING
    assert machine.feed(OK, 0) == ENDED
    assert machine.reusable is reusable and machine.response().body == b"ok"


def test_an_unasked_upgrade_fails_the_exchange() -> None:
    machine = reader()
    assert machine.feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", 0) == FAILED
    assert machine.error is not None and machine.error.status == 502 and machine.state == CLOSED


@pytest.mark.parametrize("answer", [OK, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"])
def test_answers_to_head_and_answers_that_say_close_are_single_use(answer: bytes) -> None:
    machine = reader(head=answer == OK)
    assert machine.feed(answer[:answer.index(b"\r\n\r\n") + 4], 0) == ENDED
    assert not machine.reusable and machine.state == MUST_CLOSE


@pytest.mark.parametrize(("data", "reason"), [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n", "upstream_response_too_large"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n" + b"x" * 2000, "upstream_response_too_large"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000, "upstream_headers_too_large"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "bad_upstream_response"),
    (b"NOT HTTP\r\n\r\n", "bad_upstream_response"),
])
def test_a_malformed_or_oversized_answer_fails_and_closes(data: bytes, reason: str) -> None:
    machine = reader(max_bytes=1000)
    assert machine.feed(data, 0) == FAILED
    assert machine.error is not None and machine.error.reason == reason
    assert machine.state == CLOSED and not machine.reusable


# streaming ----------------------------------------------------------------------------------------------
def test_a_body_over_the_stream_limit_streams_and_may_end_at_a_boundary() -> None:
    machine = reader(stream_limit=4)
    assert machine.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 0) == STARTED
    head = machine.head_response()
    assert head.status == 200 and machine.length == 10 and machine.take_body() == b"abc"
    assert machine.feed(b"defg", 0) == DATA and machine.take_body() == b"defg"
    assert machine.feed(b"hij", 0) == ENDED and machine.take_body() == b"hij"
    assert machine.reusable


@pytest.mark.parametrize("apart", [False, True])
def test_an_answer_of_unknown_length_that_a_read_leaves_unfinished_streams_from_there(apart: bool) -> None:
    # server-sent events, a long poll: the caller gets each piece as it comes, not at the end (however small)
    machine = reader(stream_limit=1 << 20)
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    if apart:  # a head alone waits for some body (a failure before it is still a status)
        assert machine.feed(head, 0) == NOTHING
        head = b""
    assert machine.feed(head + b"3\r\nabc\r\n", 0) == STARTED and machine.take_body() == b"abc"
    assert machine.feed(b"3\r\ndef\r\n", 0) == DATA and machine.take_body() == b"def"
    assert machine.feed(b"0\r\n\r\n", 0) == ENDED and machine.reusable
    machine = reader(stream_limit=1 << 20)  # close-delimited: the same
    assert machine.feed(b"HTTP/1.1 200 OK\r\n\r\nabc", 0) == STARTED and machine.take_body() == b"abc"


def test_an_answer_that_says_its_length_or_ends_in_the_read_is_still_read_whole() -> None:
    machine = reader(stream_limit=1 << 20)
    assert machine.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc", 0) == NOTHING
    assert machine.feed(b"def", 0) == ENDED and machine.response().body == b"abcdef"
    machine = reader(stream_limit=1 << 20)
    assert machine.feed(CHUNKED, 0) == ENDED and machine.response().body == b"ok"
    machine = reader()  # no stream limit (a batch call, a health check): never streamed
    assert machine.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", 0) == NOTHING
    assert machine.feed(b"0\r\n\r\n", 0) == ENDED and machine.response().body == b"abc"
    machine = reader(head=True, stream_limit=1 << 20)  # an answer to HEAD has no body to stream
    assert machine.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0) == ENDED


def test_a_close_mid_stream_is_a_reset_unless_the_body_is_close_delimited() -> None:
    machine = reader(stream_limit=2)
    machine.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 0)
    assert machine.eof() == FAILED and machine.error is not None and "mid-body" in machine.error.detail
    machine = reader(stream_limit=2)
    assert machine.feed(b"HTTP/1.1 200 OK\r\n\r\nabc", 0) == STARTED
    assert machine.eof() == ENDED and machine.state == MUST_CLOSE


def test_a_timeout_names_what_was_missing_and_a_given_up_exchange_closes() -> None:
    machine = reader(stream_limit=2)
    assert machine.timeout_error().detail == "no response before the timeout"
    machine.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 0)
    assert machine.timeout_error().detail == "the answer did not end before the timeout"
    machine.abandon()
    assert machine.state == CLOSED and not machine.reusable
    assert machine.feed(b"more", 0) == NOTHING
