"""Received frames below h2 (http2/frames_in.py): the same bytes, cut anywhere, fed to a connection that reads
its common frames itself and to one that leaves all of them to h2 give the same events, the same errors and the
same state (streams, windows, content-length counts, the HPACK table, what is queued to send), on both sides of a
connection, for well-behaved peers and hostile ones."""

from __future__ import annotations

import contextlib
import itertools
import re
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack
import pytest
from h2.settings import SettingCodes
from h2.stream import H2StreamStateMachine, StreamState
from hyperframe.frame import Frame
from hypothesis import given, settings
from hypothesis import strategies as st

from meshbatch.http2 import frames_in, steps, transitions
from meshbatch.http2.client_setup import new_client_connection
from meshbatch.http2.client_stream import StreamLimits
from meshbatch.http2.connection import new_connection
from meshbatch.http2.limits import PREFACE, H2Limits
from meshbatch.http2.state import CLIENT_AFTER_GOAWAY
from meshbatch.http2.whole_answer import OPEN, frame

DATA, HEADERS, PRIORITY, RST, SETTINGS, PING, GOAWAY, WINDOW, CONT = 0, 1, 2, 3, 4, 6, 7, 8, 9
ES, EH, PAD, PRIO = 0x1, 0x4, 0x8, 0x20
REQUEST = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/p"), (b":authority", b"svc")]
ANSWER = [(b":status", b"200"), (b"content-type", b"application/grpc")]


def describe(value: Any) -> Any:
    """An event, or anything in one, as plain values (nested events included) for comparison."""
    if isinstance(value, h2.events.Event):
        return type(value).__name__, {k: describe(v) for k, v in sorted(vars(value).items())}
    if isinstance(value, (list, tuple)):
        return [describe(v) for v in value]
    if isinstance(value, Frame):
        return repr(value)
    return value


def state(conn: h2.connection.H2Connection, failed: bool = False) -> Any:
    """What h2 keeps of a connection (after a connection error, but for the unread bytes it still holds: h2 stops
    in the middle of what it was given, this package at the frame that failed)."""
    streams = {}
    for sid, stream in sorted(conn.streams.items()):
        machine = stream.state_machine
        streams[sid] = (machine.state, machine.client, machine.headers_sent, machine.headers_received,
                        machine.trailers_sent, machine.trailers_received, machine.stream_closed_by,
                        vars(stream._inbound_window_manager), stream.outbound_flow_control_window,
                        stream._expected_content_length, stream._actual_content_length, stream.request_method)
    buffer = conn.incoming_buffer
    return (conn.state_machine.state, conn.highest_inbound_stream_id, conn.highest_outbound_stream_id, streams,
            dict(conn._closed_streams), vars(conn._inbound_flow_control_window_manager),
            conn.outbound_flow_control_window, list(conn.decoder.header_table.dynamic_entries),
            conn.decoder.header_table.maxsize, b"" if failed else bytes(buffer._data), len(buffer._headers_buffer),
            buffer._preamble_len, conn.data_to_send())


def outcome(receive: Any, conn: h2.connection.H2Connection, chunk: bytes) -> Any:
    try:
        return "events", describe(receive(conn, chunk))
    except h2.exceptions.ProtocolError as error:
        return "error", type(error).__name__, re.sub(r" at 0x[0-9a-f]+", "", str(error)), error.error_code


def same(chunks: list[bytes], client_side: bool = False, prepare: Any = None) -> list[Any]:
    """Feed `chunks` to a connection reading below h2 and to one reading through h2 alone; they agree at every
    step (stopping at the first error, after which neither is fed). Returns what ours gave for each chunk."""
    make = (lambda: new_client_connection(StreamLimits())) if client_side else (lambda: new_connection(H2Limits()))
    ours, theirs = make(), make()
    for conn in (ours, theirs):
        if prepare is not None:
            prepare(conn)
        conn.data_to_send()
    seen = []
    for chunk in chunks:
        got = outcome(type(ours).receive_data, ours, chunk)
        assert got == outcome(h2.connection.H2Connection.receive_data, theirs, chunk)
        assert state(ours, got[0] == "error") == state(theirs, got[0] == "error")
        seen.append(got)
        if got[0] == "error":
            break
    return seen


def cut(data: bytes, points: list[int]) -> list[bytes]:
    edges = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in itertools.pairwise(edges)]


class Peer:
    """A client's bytes, frame by frame (HPACK blocks from one encoder, so its table stays in step)."""

    def __init__(self) -> None:
        self.encoder = hpack.Encoder()
        self.out = [PREFACE + frame(SETTINGS, 0, 0, b""), frame(SETTINGS, 1, 0, b"")]

    def block(self, fields: list[tuple[bytes, bytes]]) -> bytes:
        return self.encoder.encode(fields)

    def add(self, kind: int, flags: int, sid: int, payload: bytes = b"") -> Peer:
        self.out.append(frame(kind, flags, sid, payload))
        return self

    def request(self, sid: int, end: bool = False, fields: list[tuple[bytes, bytes]] = REQUEST) -> Peer:
        return self.add(HEADERS, EH | (ES if end else 0), sid, self.block(fields))

    def bytes(self) -> bytes:
        return b"".join(self.out)


def grpc_calls(n: int) -> bytes:
    peer = Peer()
    for i in range(n):
        sid = 2 * i + 1
        peer.request(sid).add(DATA, ES, sid, b"\x00\x00\x00\x00\x02hi")
    return peer.bytes()


def credited_calls(n: int) -> bytes:
    """gRPC calls, each answered's window credited back by a WINDOW_UPDATE for the connection and one for its
    stream (as a client does)."""
    peer = Peer()
    for i in range(n):
        sid = 2 * i + 1
        peer.request(sid).add(DATA, ES, sid, b"\x00\x00\x00\x00\x02hi").add(WINDOW, 0, 0, b"\x00\x00\x00\x07")
        peer.add(WINDOW, 0, sid, b"\x00\x00\x00\x07")
    return peer.bytes()


SCENARIOS = {
    "calls": grpc_calls(12),
    "gets": Peer().request(1, True).request(3, True).request(5, True).bytes(),
    "body and trailers": Peer().request(1).add(DATA, 0, 1, b"a" * 300).add(DATA, 0, 1, b"")
    .add(HEADERS, EH | ES, 1, hpack.Encoder().encode([(b"grpc-status", b"0")])).bytes(),
    "padded and prioritised": Peer().add(HEADERS, EH | PRIO, 1, b"\x00\x00\x00\x00\x10" + Peer().block(REQUEST))
    .add(DATA, PAD | ES, 1, b"\x03abc\x00\x00\x00").bytes(),
    "continuation": Peer().add(HEADERS, 0, 1, Peer().block(REQUEST)[:3]).add(CONT, EH | 0, 1,
                                                                            Peer().block(REQUEST)[3:])
    .add(DATA, ES, 1, b"x").bytes(),
    "control frames between": Peer().request(1).add(PING, 0, 0, b"12345678").add(WINDOW, 0, 0, b"\x00\x00\x10\x00")
    .add(DATA, 0, 1, b"y").add(WINDOW, 0, 1, b"\x00\x00\x10\x00").add(RST, 0, 1, b"\x00\x00\x00\x08")
    .request(3, True).add(PRIORITY, 0, 5, b"\x00\x00\x00\x00\x10").request(5, True).bytes(),
    "content-length kept": Peer().request(1, fields=[*REQUEST, (b"content-length", b"3")])
    .add(DATA, 0, 1, b"ab").add(DATA, ES, 1, b"c").bytes(),
    "content-length exceeded": Peer().request(1, fields=[*REQUEST, (b"content-length", b"2")])
    .add(DATA, ES, 1, b"abc").bytes(),
    "content-length not digits": Peer().request(1, fields=[*REQUEST, (b"content-length", b"+3")]).bytes(),
    "content-lengths that differ": Peer().request(1, fields=[*REQUEST, (b"content-length", b"3"),
                                                             (b"content-length", b"4")]).bytes(),
    "content-lengths that agree": Peer().request(1, fields=[*REQUEST, (b"content-length", b"1"),
                                                            (b"content-length", b"1")]).add(DATA, ES, 1, b"x").bytes(),
    "streams reset, then more": Peer().request(1).request(3).add(RST, 0, 1, b"\x00\x00\x00\x08")
    .add(RST, 0, 3, b"\x00\x00\x00\x08").request(5, True).add(DATA, 0, 3, b"late").request(7, True).bytes(),
    "content-length short": Peer().request(1, fields=[*REQUEST, (b"content-length", b"5")])
    .add(DATA, ES, 1, b"abc").bytes(),
    "data beyond the window": Peer().request(1).add(DATA, 0, 1, b"z" * 16_000).add(DATA, 0, 1, b"z" * 16_000)
    .add(DATA, 0, 1, b"z" * 16_000).add(DATA, 0, 1, b"z" * 16_000).add(DATA, 0, 1, b"z" * 16_000).bytes(),
    "data on an unknown stream": Peer().request(1, True).add(DATA, 0, 7, b"q").bytes(),
    "data on a closed stream": Peer().request(1, True).add(DATA, 0, 1, b"q").bytes(),
    "data after a reset": Peer().request(1).add(RST, 0, 1, b"\x00\x00\x00\x08").add(DATA, 0, 1, b"q").bytes(),
    "headers on a stream id too low": Peer().request(3, True).request(1, True).bytes(),
    "headers on an even stream": Peer().request(2, True).bytes(),
    "trailers without the end": Peer().request(1).add(HEADERS, EH, 1, b"\x88").bytes(),
    "informational request": Peer().request(1, fields=[(b":status", b"100"), *REQUEST]).bytes(),
    "bad HPACK": Peer().add(HEADERS, EH | ES, 1, b"\xff\xff\xff\xff\xff").bytes(),
    "HPACK bomb": Peer().request(1, True, [*REQUEST, (b"x-big", b"b" * 4000)])
    .request(3, True, [*REQUEST] + [(b"x-big", b"b" * 4000)] * 40).bytes(),
    "data before the preface's settings": PREFACE + frame(DATA, 0, 1, b"x"),
    "goaway then frames": Peer().request(1).add(GOAWAY, 0, 0, b"\x00\x00\x00\x01\x00\x00\x00\x00")
    .add(DATA, ES, 1, b"x").request(3, True).bytes(),
    "unknown frame type": Peer().add(0xFA, 0xFF, 1, b"ext").request(1, True).bytes(),
    "frame over the size": Peer().request(1).add(DATA, 0, 1, b"w" * 16_385).bytes(),
    "reserved bit in the stream id": Peer().request(1).bytes() + frame(DATA, ES, 1 | 1 << 31, b"r"),
    "data on stream 0": Peer().add(DATA, 0, 0, b"x").bytes(),
    "window updates": Peer().request(1).add(WINDOW, 0, 0, b"\x00\x00\x00\x07").add(WINDOW, 0xFF, 1, b"\x00\x01\x00\x00")
    .add(DATA, ES, 1, b"x").add(WINDOW, 0, 1, b"\x00\x00\x00\x07").request(3, True)
    .add(WINDOW, 0, 3 | 1 << 31, b"\x00\x00\x00\x01").bytes(),
    "window update of zero on a stream": Peer().request(1).add(WINDOW, 0, 1, b"\x00\x00\x00\x00").bytes(),
    "window update of zero": Peer().request(1).add(WINDOW, 0, 0, b"\x00\x00\x00\x00").bytes(),
    "window update with the reserved bit": Peer().request(1).add(WINDOW, 0, 1, b"\x80\x00\x00\x01").bytes(),
    "window update too short": Peer().request(1).add(WINDOW, 0, 1, b"\x00\x00\x01").bytes(),
    "window update too long": Peer().request(1).add(WINDOW, 0, 0, b"\x00\x00\x00\x01\x00").bytes(),
    "connection window past 2^31-1": Peer().request(1).add(WINDOW, 0, 0, b"\x7f\xff\x00\x00").bytes(),
    "stream window past 2^31-1": Peer().request(1).add(WINDOW, 0, 1, b"\x7f\xff\x00\x00")
    .add(DATA, ES, 1, b"after").request(3, True).bytes(),
    "window update on a closed stream": Peer().request(1).add(RST, 0, 1, b"\x00\x00\x00\x08")
    .add(WINDOW, 0, 1, b"\x00\x00\x00\x01").request(3, True).bytes(),
    "window update on an idle stream": Peer().request(1).add(WINDOW, 0, 9, b"\x00\x00\x00\x01").bytes(),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_server_agrees_with_h2_whole_and_byte_by_byte(name: str) -> None:
    data = SCENARIOS[name]
    same([data])
    if name == "frame over the size":
        return  # (refused at its header when cut: the test below)
    if len(data) < 2_000:
        same([data[i:i + 1] for i in range(len(data))])
    else:
        same(cut(data, list(range(0, len(data), 997))))


def test_too_many_streams_is_refused_as_h2_refuses_it() -> None:
    peer = Peer()
    for i in range(H2Limits().max_concurrent_streams + 1):
        peer.request(2 * i + 1)
    seen = same([peer.bytes()])
    assert seen[-1][:2] == ("error", "TooManyStreamsError")


def test_a_frame_over_the_size_is_refused_when_its_header_arrives() -> None:
    """h2 buffers a frame until all of it came (up to 16 MiB) before refusing its size; here its header is enough,
    with the same error and the same GOAWAY."""
    conn = new_connection(H2Limits())
    conn.receive_data(Peer().bytes())
    conn.data_to_send()
    with pytest.raises(h2.exceptions.FrameTooLargeError):
        conn.receive_data(frame(DATA, 0, 1, b"w" * 16_385)[:20])
    assert conn.state_machine.state == h2.connection.ConnectionState.CLOSED
    assert conn.data_to_send()[3] == GOAWAY
    split = new_connection(H2Limits())  # the header itself cut across reads: refused once its length is read
    split.receive_data(Peer().bytes())
    split.data_to_send()
    oversize = frame(DATA, 0, 1, b"w" * 16_385)
    assert split.receive_data(oversize[:2]) == []
    with pytest.raises(h2.exceptions.FrameTooLargeError):
        split.receive_data(oversize[2:12])
    assert split.data_to_send()[3] == GOAWAY


def answers(n: int, trailers: bool = True) -> bytes:
    encoder = hpack.Encoder()
    out = [frame(SETTINGS, 0, 0, b""), frame(SETTINGS, 1, 0, b"")]
    for i in range(n):
        sid = 2 * i + 1
        out.append(frame(HEADERS, EH, sid, encoder.encode(ANSWER)))
        out.append(frame(DATA, 0 if trailers else ES, sid, b"\x00\x00\x00\x00\x02ok"))
        if trailers:
            out.append(frame(HEADERS, EH | ES, sid, encoder.encode([(b"grpc-status", b"0")])))
    return b"".join(out)


def requests_sent(n: int, method: bytes = b"POST") -> Any:
    def prepare(conn: h2.connection.H2Connection) -> None:
        conn.initiate_connection()
        for i in range(n):
            conn.send_headers(2 * i + 1, [(b":method", method), *REQUEST[1:]], end_stream=True)
    return prepare


CLIENT_SCENARIOS = {
    "answers": (answers(8), 8, b"POST"),
    "answers without trailers": (answers(3, trailers=False), 3, b"POST"),
    "continue first": (frame(SETTINGS, 0, 0, b"") + frame(HEADERS, EH, 1, hpack.Encoder().encode(
        [(b":status", b"100")])) + answers(1)[18:], 1, b"POST"),
    "data before the answer's head": (frame(SETTINGS, 0, 0, b"") + frame(DATA, 0, 1, b"early"), 1, b"POST"),
    "a HEAD's answer with a body": (frame(SETTINGS, 0, 0, b"") + frame(HEADERS, EH, 1, hpack.Encoder().encode(
        [(b":status", b"200"), (b"content-length", b"4")])) + frame(DATA, ES, 1, b"body"), 1, b"HEAD"),
    "headers on a stream never opened": (frame(SETTINGS, 0, 0, b"") + frame(HEADERS, EH | ES, 9, b"\x88"), 1,
                                         b"POST"),
    "push refused": (frame(SETTINGS, 0, 0, b"") + frame(5, EH, 1, b"\x00\x00\x00\x02\x88"), 1, b"POST"),
    "window updates between answers": (answers(1) + frame(WINDOW, 0, 0, b"\x00\x00\x00\x07")
                                       + frame(WINDOW, 0, 3, b"\x00\x00\x00\x07")
                                       + frame(WINDOW, 0, 1, b"\x00\x00\x00\x07")
                                       + frame(WINDOW, 0, 3, b"\x7f\xff\xff\xff"), 2, b"POST"),
}


@pytest.mark.parametrize("name", sorted(CLIENT_SCENARIOS))
def test_the_client_agrees_with_h2_whole_and_byte_by_byte(name: str) -> None:
    data, n, method = CLIENT_SCENARIOS[name]
    same([data], client_side=True, prepare=requests_sent(n, method))
    same([data[i:i + 1] for i in range(len(data))], client_side=True, prepare=requests_sent(n, method))


FRAME = st.tuples(st.sampled_from([DATA, DATA, DATA, HEADERS, HEADERS, RST, PING, WINDOW, CONT, PRIORITY, 0xFA]),
                  st.sampled_from([0, ES, EH, EH | ES, PAD, PRIO | EH, 0xFF]), st.integers(0, 9),
                  st.one_of(st.binary(max_size=40), st.sampled_from([b"", b"\x00\x00\x10\x00", b"\x88", b"x" * 300,
                                                                     b"\x7f\xff\xff\xff", b"\x80\x00\x00\x01"])))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.tuples(st.just("request"), st.integers(0, 6), st.booleans()), FRAME), max_size=30),
       st.lists(st.integers(0, 5_000), max_size=6))
def test_any_sequence_cut_anywhere_agrees_with_h2(steps: list[Any], points: list[int]) -> None:
    peer = Peer()
    for step in steps:
        if step[0] == "request":
            peer.request(2 * step[1] + 1, step[2])
        else:
            kind, flags, sid, payload = step
            peer.add(kind, flags, sid, payload)
    same(cut(peer.bytes(), points))


@settings(max_examples=100, deadline=None)
@given(st.lists(FRAME, max_size=20), st.lists(st.integers(0, 3_000), max_size=6))
def test_any_answer_sequence_cut_anywhere_agrees_with_h2(steps: list[Any], points: list[int]) -> None:
    data = answers(2) + b"".join(frame(kind, flags, sid, payload) for kind, flags, sid, payload in steps)
    same(cut(data, points), client_side=True, prepare=requests_sent(5))


def test_the_common_frames_never_reach_h2s_frame_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """Of twelve gRPC calls (a HEADERS and a DATA frame each) read with the preface, h2 parses the SETTINGS, their
    acknowledgement and the first HEADERS (the one that opens the connection's state machine), nothing else; with
    the bytes cut in the middle of a frame, that frame too (its header twice: cut, and whole)."""
    parsed: list[int] = []
    real = Frame.parse_frame_header

    def counting(header: Any) -> Any:
        parsed.append(header[3])
        return real(header)

    monkeypatch.setattr(Frame, "parse_frame_header", staticmethod(counting))
    ours = new_connection(H2Limits())
    assert len(ours.receive_data(grpc_calls(12))) == 2 + 12 * 3  # (settings, acknowledged; received, data, ended)
    assert parsed == [SETTINGS, SETTINGS, HEADERS]
    parsed.clear()
    ours = new_connection(H2Limits())
    events = ours.receive_data(credited_calls(12))
    assert sum(isinstance(event, h2.events.WindowUpdated) for event in events) == 24
    assert parsed == [SETTINGS, SETTINGS, HEADERS]
    ours = new_connection(H2Limits())
    first = grpc_calls(1)
    ours.receive_data(first)
    parsed.clear()
    data = grpc_calls(13)[len(first):]
    middle = len(data) - 5  # (in the payload of the last DATA frame, 16 bytes)
    events = ours.receive_data(data[:middle]) + ours.receive_data(data[middle:])
    assert sum(isinstance(event, h2.events.StreamEnded) for event in events) == 12
    assert parsed == [DATA, DATA]


def test_outgoing_takes_what_h2s_data_to_send_takes() -> None:
    ours, theirs = (new_connection(H2Limits()) for _ in range(2))
    for conn in (ours, theirs):
        conn.initiate_connection()
    assert steps.outgoing(ours) == theirs.data_to_send() != b""
    assert steps.outgoing(ours) == theirs.data_to_send() == b""
    assert ours._data_to_send == theirs._data_to_send == bytearray()


def process_input(machine: H2StreamStateMachine, table: list[Any]) -> Any:
    return machine.process_input(table[-1])


def outcome_of(run: Any, machine: H2StreamStateMachine, table: list[Any]) -> Any:
    try:
        return describe(run(machine, table))
    except h2.exceptions.ProtocolError as error:
        return type(error).__name__, str(error)


def test_the_steps_are_h2s_transitions() -> None:
    """The states index their tables (0 to 6, no gap), each step agrees with `process_input` from every state
    and every combination of the flags the transitions read (events, their attributes in order, errors, the
    state and flags after), and the open connection's steps skipped are h2's no-ops, the client's table after
    GOAWAY included."""
    assert [int(s) for s in sorted(StreamState, key=int)] == list(range(len(StreamState)))
    flags = ("headers_received", "trailers_received", "headers_sent", "trailers_sent")
    for table in (steps.RECV_HEADERS, steps.RECV_INFORMATIONAL_HEADERS, steps.RECV_DATA, steps.RECV_END_STREAM,
                  steps.RECV_WINDOW_UPDATE, steps.SEND_HEADERS, steps.SEND_DATA, steps.SEND_END_STREAM):
        for start, client, values in itertools.product(StreamState, (True, False, None),
                                                       itertools.product((True, False), repeat=len(flags))):
            ours, theirs = (H2StreamStateMachine(7) for _ in range(2))
            for machine in (ours, theirs):
                machine.state, machine.client = start, client
                for name, value in zip(flags, values, strict=True):
                    setattr(machine, name, value)
            results = [outcome_of(steps.step, ours, table), outcome_of(process_input, theirs, table)]
            assert results[0] == results[1]
            assert vars(ours) == vars(theirs)
    # the compiled twins make the same events, attribute for attribute and in the same order
    for method, twin in transitions.NATIVE.items():
        for received in (False, True):
            ours, theirs = (H2StreamStateMachine(9) for _ in range(2))
            for machine in (ours, theirs):
                machine.client, machine.headers_received, machine.headers_sent = False, received, received
            if method.__name__ in ("request_sent", "response_received"):
                ours.client = theirs.client = True
            try:
                expected = method(theirs, StreamState.OPEN)
            except (AssertionError, h2.exceptions.ProtocolError) as error:
                with pytest.raises(type(error)):
                    twin(ours, StreamState.OPEN)
                continue
            made = twin(ours, StreamState.OPEN)
            assert [(type(e), list(vars(e).items())) for e in made] == [(type(e), list(vars(e).items()))
                                                                        for e in expected]
            assert vars(ours) == vars(theirs)
    assert frames_in.QUIET
    for state in OPEN:
        for kind in (h2.connection.ConnectionInputs.RECV_HEADERS, h2.connection.ConnectionInputs.RECV_DATA,
                     h2.connection.ConnectionInputs.RECV_WINDOW_UPDATE):
            assert CLIENT_AFTER_GOAWAY[(state, kind)] == (None, state)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["open", "ended", "answered", "reset"]), max_size=12), st.integers(0, 1),
       st.sampled_from([None, 1, 2, 65_536]))
def test_the_stream_bookkeeping_is_h2s(fates: list[str], remainder: int, closed_limit: int | None) -> None:
    """`open_streams` counts and sweeps as h2's `_open_streams` (the closed streams kept up to h2's limit, the
    oldest forgotten first); `new_stream` makes the stream `_begin_new_stream` makes, on a server with streams in
    every state."""
    peer, conns = Peer(), [new_connection(H2Limits()) for _ in range(2)]
    for conn in conns:
        conn._closed_streams._size_limit = closed_limit  # type: ignore[attr-defined]
    for i, fate in enumerate(fates):
        peer.request(2 * i + 1, fate != "open")
        if fate == "reset":
            peer.add(RST, 0, 2 * i + 1, b"\x00\x00\x00\x08")
    for conn in conns:
        h2.connection.H2Connection.receive_data(conn, peer.bytes())
        for i, fate in enumerate(fates):
            if fate == "answered":
                conn.send_headers(2 * i + 1, [(b":status", b"200")], end_stream=True)
    ours, theirs = conns
    assert steps.open_streams(ours, remainder) == theirs._open_streams(remainder)
    assert state(ours) == state(theirs)
    sid = 2 * len(fates) + 1
    made = steps.new_stream(ours, sid, False), theirs._begin_new_stream(sid, h2.connection.AllowedStreamIDs.ODD)
    mine, other = ((vars(s.state_machine), vars(s._inbound_window_manager), type(s._inbound_window_manager),
                    {k: v for k, v in vars(s).items() if k not in ("state_machine", "_inbound_window_manager")})
                   for s in made)
    assert mine == other
    assert state(ours) == state(theirs)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["set", "acknowledge"]),
                          st.sampled_from(list(SettingCodes)), st.integers(1, 2**20)), max_size=8))
def test_a_setting_is_read_as_h2_reads_it(changes: list[tuple[str, SettingCodes, int]]) -> None:
    """`setting` and `streams_allowed` give what h2's properties give, whatever was set and acknowledged since."""
    for client in (True, False):
        settings_ = h2.settings.Settings(client=client)
        for kind, code, value in changes:
            if kind == "set":
                with contextlib.suppress(h2.exceptions.InvalidSettingsValueError):
                    settings_[code] = value
            else:
                settings_.acknowledge()
            assert steps.setting(settings_, steps.INITIAL_WINDOW_SIZE, 0) == settings_.initial_window_size
            assert steps.streams_allowed(settings_) == settings_.max_concurrent_streams
            for other in SettingCodes:
                assert steps.setting(settings_, int(other), -1) == settings_.get(other, -1)


def test_the_next_stream_id_is_h2s() -> None:
    """`next_stream_id` gives h2's `get_next_available_stream_id`, on both sides, and 0 where h2 raises (the ids
    ran out)."""
    for client in (True, False):
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=client))
        for last in (0, 1, 2, 7, 8, 2**31 - 3, 2**31 - 2, 2**31 - 1):
            conn.highest_outbound_stream_id = last
            try:
                expected = conn.get_next_available_stream_id()
            except h2.exceptions.NoAvailableStreamIDError:
                expected = 0
            assert steps.next_stream_id(conn) == expected
