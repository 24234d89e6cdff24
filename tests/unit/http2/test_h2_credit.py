"""http2/credit.py against h2's `acknowledge_received_data`: two connections read the same frames and are credited
the same sizes, one through h2, one through this package; their windows and what they queue to send stay equal
(streams open, half closed, reset, never opened; windows used up; credit past half a window)."""

from __future__ import annotations

from typing import Any

import h2.connection
import h2.exceptions
import hpack
from hyperframe.frame import WindowUpdateFrame
from hypothesis import given, settings
from hypothesis import strategies as st

from meshbatch.http2.connection import new_connection
from meshbatch.http2.credit import acknowledge, credit_connection, credit_stream
from meshbatch.http2.limits import PREFACE, H2Limits
from meshbatch.http2.whole_answer import frame

DATA, HEADERS, RST, SETTINGS = 0, 1, 3, 4
ES, EH = 0x1, 0x4
REQUEST = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/p"), (b":authority", b"svc")]
SIZES = [0, 1, 7, 1_000, 1_025, 16_383, 16_384]


def windows(conn: h2.connection.H2Connection) -> Any:
    return (vars(conn._inbound_flow_control_window_manager),
            {sid: (vars(s._inbound_window_manager), s.state_machine.state) for sid, s in sorted(conn.streams.items())})


def received(frames: list[tuple[str, int, int]]) -> bytes:
    """The client's bytes: requests opened (ended or not), DATA of a size, resets."""
    encoder = hpack.Encoder()
    out = [PREFACE + frame(SETTINGS, 0, 0, b""), frame(SETTINGS, 1, 0, b"")]
    for kind, sid, size in frames:
        if kind == "open":
            out.append(frame(HEADERS, EH | (ES if size else 0), sid, encoder.encode(REQUEST)))
        elif kind == "data":
            out.append(frame(DATA, 0, sid, b"d" * size))
        else:
            out.append(frame(RST, 0, sid, b"\x00\x00\x00\x08"))
    return b"".join(out)


def read(data: bytes) -> tuple[h2.connection.H2Connection, bool]:
    conn = new_connection(H2Limits())
    try:
        conn.receive_data(data)
    except h2.exceptions.ProtocolError:
        return conn, False
    conn.data_to_send()
    return conn, True


OPENED = st.tuples(st.just("open"), st.sampled_from([1, 3, 5]), st.integers(0, 1))
DATA_FRAME = st.tuples(st.just("data"), st.sampled_from([1, 3, 5]), st.sampled_from(SIZES))
RESET = st.tuples(st.just("reset"), st.sampled_from([1, 3, 5]), st.just(0))
CREDIT = st.tuples(st.sampled_from(["both", "connection", "stream"]), st.sampled_from([1, 3, 5, 7, 9]),
                   st.sampled_from(SIZES))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(OPENED, DATA_FRAME, DATA_FRAME, RESET), max_size=14), st.lists(CREDIT, max_size=10))
def test_the_credit_is_h2s(frames: list[tuple[str, int, int]], credits: list[tuple[str, int, int]]) -> None:
    data = received(sorted(frames, key=lambda f: f[0] != "open"))
    theirs, ok = read(data)
    ours, _ = read(data)
    if not ok:
        return
    for kind, sid, size in credits:
        if kind == "both":
            try:
                theirs.acknowledge_received_data(size, sid)
            except h2.exceptions.NoSuchStreamError:  # (h2 raises for a stream never opened, after crediting the
                pass  # connection)
            acknowledge(ours, sid, size)
        elif kind == "connection":
            conn_only(theirs, size)
            credit_connection(ours, size)
        else:
            stream_only(theirs, sid, size)
            credit_stream(ours, sid, size)
        assert windows(ours) == windows(theirs)
        assert ours.data_to_send() == theirs.data_to_send()


def conn_only(conn: h2.connection.H2Connection, size: int) -> None:
    """h2's connection half: its manager's increment, queued as a frame."""
    increment = conn._inbound_flow_control_window_manager.process_bytes(size)
    if increment:
        conn._prepare_for_sending([_update(0, increment)])


def stream_only(conn: h2.connection.H2Connection, sid: int, size: int) -> None:
    stream = conn.streams.get(sid)
    if stream is not None and stream.open:
        conn._prepare_for_sending(stream.acknowledge_received_data(size))


def _update(sid: int, increment: int) -> Any:
    update = WindowUpdateFrame(sid)
    update.window_increment = increment
    return update


def test_a_used_up_window_is_credited_back_once_a_kilobyte_is_read() -> None:
    """A window used up to the byte: h2 and this package both hand credit back once 1,025 bytes were read, not
    1,024."""
    fresh, _ = read(received([("open", 1, 0)]))
    window = min(fresh.streams[1]._inbound_window_manager.current_window_size,
                 fresh._inbound_flow_control_window_manager.current_window_size)
    frames = [("open", 1, 0)] + [("data", 1, 16_384)] * (window // 16_384) + [("data", 1, window % 16_384)]
    theirs, ok = read(received(frames))
    ours, _ = read(received(frames))
    assert ok and 0 in (ours.streams[1]._inbound_window_manager.current_window_size,
                        ours._inbound_flow_control_window_manager.current_window_size)
    for size in (1_024, 1):
        theirs.acknowledge_received_data(size, 1)
        acknowledge(ours, 1, size)
        sent = ours.data_to_send()
        assert sent == theirs.data_to_send()
        assert bool(sent) == (size == 1)
    assert windows(ours) == windows(theirs)
