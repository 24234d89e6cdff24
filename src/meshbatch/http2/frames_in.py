"""Received frames below h2: a request's or an answer's HEADERS and its DATA parsed here, every other frame handed
to h2's own `receive_data`, with the events and the state h2 alone would give.

h2 reads each frame into objects first: its frame buffer copies the bytes into a bytearray and slices them out
again, hyperframe builds a frame object and a set of its flag names, h2 dispatches it by class, builds header
validation flags it then does not use (inbound validation is off: http2/head.py checks heads) and copies the
fields through a generator; that was more than half of what h2 cost a proxied call. `receive` walks the frames of
a read itself and, for the common ones, calls what h2 would call in the order h2 calls it: the HPACK decoder
(h2's own `_decode_headers`, so a bomb or a bad block fails the same way), the connection's and the stream's
state machines (which make the events and refuse what is out of order), the flow-control windows and the
content-length count. A frame is taken here only when it cannot fail in a way these steps do not reproduce: a
DATA frame without padding on a stream that may receive, within both windows and the stream's content-length; a
HEADERS frame without padding or priority that ends its block, opening a stream the server may accept (its id
above the last, within the concurrent-stream limit) or on a stream that may receive; a WINDOW_UPDATE frame of a
valid increment that keeps its window within 2^31-1, for the connection or for a stream that is open or half
closed (an upstream credits each request's body with one: a lone call's frames are all taken here). Everything
else (the preface, SETTINGS, PING, RST_STREAM, GOAWAY, CONTINUATION, padded or prioritised frames, frames of
closed streams, a flow-control error, a frame split across reads) goes to h2 a whole frame at a time, in order,
so the two never see the same byte and h2's buffer is empty whenever a frame is taken here. A frame longer than
the connection allows is refused as soon as its header arrives (h2 refuses it the same way once it has buffered
all of it, up to 16 MiB). tests/unit/http2/test_h2_frames_in.py feeds the same bytes, cut anywhere, to this and
to h2 alone and compares the events, the errors and the state.
"""

from __future__ import annotations

from typing import Any, Final, cast

from h2.connection import ConnectionInputs, H2Connection, H2ConnectionStateMachine, _decode_headers
from h2.errors import ErrorCodes
from h2.events import Event, TrailersReceived, WindowUpdated
from h2.exceptions import FrameTooLargeError, ProtocolError
from h2.frame_buffer import FrameBuffer
from h2.stream import STREAM_OPEN, H2Stream, StreamState

from meshbatch.http2.hpack_in import MAX_BLOCK, RepeatDecoder
from meshbatch.http2.hpack_kept import kept_now
from meshbatch.http2.steps import (
    RECV_DATA,
    RECV_END_STREAM,
    RECV_HEADERS,
    RECV_INFORMATIONAL_HEADERS,
    RECV_WINDOW_UPDATE,
    client_side,
    new_stream,
    open_streams,
    step,
    streams_allowed,
)
from meshbatch.http2.whole_answer import DATA, END_HEADERS, END_STREAM, HEADERS, OPEN

PADDED: Final = 0x8
PRIORITY: Final = 0x20
WINDOW_UPDATE: Final = 0x8
LARGEST_WINDOW: Final = 2**31 - 1  # (RFC 9113 6.9.1: a window beyond it is a flow-control error)
Fields = list[tuple[bytes, bytes]]
RECEIVING: Final = (StreamState.OPEN, StreamState.HALF_CLOSED_LOCAL)
h2_receive: Final = H2Connection.receive_data
# An open connection's state machine takes a received HEADERS, DATA or WINDOW_UPDATE frame without a change or an
# event (h2 4.x): the step is skipped then, and taken should a release of h2 ever give it one.
QUIET: Final = all(H2ConnectionStateMachine._transitions.get((state, given)) == (None, state)
                   for state in OPEN for given in (ConnectionInputs.RECV_HEADERS, ConnectionInputs.RECV_DATA,
                                                   ConnectionInputs.RECV_WINDOW_UPDATE))


def receive(conn: H2Connection, data: bytes) -> list[Event]:
    """h2's `conn.receive_data(data)`: the same events, errors and state; see the module docstring."""
    config = conn.config
    if config.validate_inbound_headers or config.normalize_inbound_headers or config.header_encoding:
        return h2_receive(conn, data)  # (h2's checks on: none of this package's connections)
    buffer = conn.incoming_buffer
    size = len(data)
    at = _held(conn, buffer, data)
    events: list[Event] = h2_receive(conn, data[:at]) if at else []
    while at < size:
        end = size
        if size - at >= 9:
            end = at + 9 + _allowed(conn, (data[at] << 16) | (data[at + 1] << 8) | data[at + 2])
            if end <= size and conn.state_machine.state in OPEN and not buffer._headers_buffer:
                got = _frame(conn, data, at, end)
                if got is not None:
                    events += got
                    at = end
                    continue
            end = min(end, size)
        events += h2_receive(conn, data[at:end])  # (a frame cut short: the rest of the read, h2 holds it)
        at = end
    return events


def _allowed(conn: H2Connection, length: int) -> int:
    """A frame's length from its header, refused (GOAWAY FRAME_SIZE_ERROR queued, then raised as h2 raises it)
    when the connection allows less: before any of its payload is held."""
    if length > conn.max_inbound_frame_size:
        conn._terminate_connection(ErrorCodes.FRAME_SIZE_ERROR)
        raise FrameTooLargeError(f"Received overlong frame: length {length}, max {conn.max_inbound_frame_size}")
    return length


def _held(conn: H2Connection, buffer: FrameBuffer, data: bytes) -> int:
    """How much of `data` h2 needs to finish what its buffer holds: the rest of the preface (h2 checks it), the
    rest of a frame (all of `data` when a frame's length cannot be read yet; a header completed by `data` is
    checked as in `receive`); 0 when it holds nothing."""
    if buffer._preamble_len:
        return min(len(data), buffer._preamble_len)
    held = buffer._data
    if not held:
        return 0
    head = bytes(held[:9]) if len(held) >= 9 else bytes(held) + data[:9 - len(held)]
    if len(head) < 9:
        return len(data)
    return min(len(data), max(0, 9 + _allowed(conn, (head[0] << 16) | (head[1] << 8) | head[2]) - len(held)))


def _frame(conn: H2Connection, data: bytes, at: int, end: int) -> list[Event] | None:
    """The events of the whole frame `data[at:end]` when it is one taken here, else None (nothing changed)."""
    kind = data[at + 3]
    flags = data[at + 4]
    sid = ((data[at + 5] & 0x7F) << 24) | (data[at + 6] << 16) | (data[at + 7] << 8) | data[at + 8]
    if kind == WINDOW_UPDATE:
        return _window_update(conn, sid, data, at + 9, end) if end - at == 13 else None
    if not sid:
        return None
    try:
        if kind == DATA:
            if flags & PADDED:
                return None
            return _data(conn, sid, bool(flags & END_STREAM), data[at + 9:end], end - at - 9)
        if kind == HEADERS and flags & END_HEADERS and not flags & (PADDED | PRIORITY):
            return _headers(conn, sid, bool(flags & END_STREAM), data[at + 9:end])
    except ProtocolError as error:  # as h2's receive_data: GOAWAY with the error's code queued, then raised
        conn._terminate_connection(error.error_code)
        raise
    return None


def _data(conn: H2Connection, sid: int, end: bool, payload: bytes, length: int) -> list[Event] | None:
    stream = conn.streams.get(sid)
    if stream is None or stream.state_machine.state not in RECEIVING:
        return None
    window = conn._inbound_flow_control_window_manager
    own = stream._inbound_window_manager
    if length > window.current_window_size or length > own.current_window_size:
        return None  # (h2's flow-control error)
    expected = stream._expected_content_length
    if expected is not None:
        total = stream._actual_content_length + length
        if total > expected or (end and total != expected):
            return None  # (h2's body-length error)
    events = [] if QUIET else conn.state_machine.process_input(ConnectionInputs.RECV_DATA)
    window.current_window_size -= length  # (h2's `window_consumed`: within the window, checked above)
    machine = stream.state_machine
    got = step(machine, RECV_DATA)
    event = got[0]
    own.current_window_size -= length
    stream._actual_content_length += length  # (h2's `_track_content_length`: within the length, checked above)
    if end:
        ended = step(machine, RECV_END_STREAM)
        event.stream_ended = ended[0]
        got += ended
    event.data = payload
    event.flow_controlled_length = length
    return events + got if events else got


def _window_update(conn: H2Connection, sid: int, data: bytes, at: int, end: int) -> list[Event] | None:
    """h2's `_receive_window_update_frame` (and the stream's `receive_window_update`) for a 4-byte payload; None
    for an increment h2 refuses (0, or the reserved bit set), a window it would take past 2^31-1, a stream not
    open or half closed."""
    increment = (data[at] << 24) | (data[at + 1] << 16) | (data[at + 2] << 8) | data[at + 3]
    if increment < 1 or increment > LARGEST_WINDOW:
        return None
    if not sid:
        window = conn.outbound_flow_control_window + increment
        if window > LARGEST_WINDOW:
            return None
        events = [] if QUIET else conn.state_machine.process_input(ConnectionInputs.RECV_WINDOW_UPDATE)
        conn.outbound_flow_control_window = window
        update: Event = WindowUpdated(stream_id=0, delta=increment)
        return [*events, update]
    stream = conn.streams.get(sid)
    if stream is None or not STREAM_OPEN[stream.state_machine.state]:  # (open or half closed)
        return None
    window = stream.outbound_flow_control_window + increment
    if window > LARGEST_WINDOW:
        return None  # (a stream error: h2 resets the stream)
    events = [] if QUIET else conn.state_machine.process_input(ConnectionInputs.RECV_WINDOW_UPDATE)
    got = step(stream.state_machine, RECV_WINDOW_UPDATE)
    got[0].delta = increment
    stream.outbound_flow_control_window = window
    return events + got if events else got


def _headers(conn: H2Connection, sid: int, end: bool, block: bytes) -> list[Event] | None:
    stream = conn.streams.get(sid)
    if stream is None:  # a new stream: only a server's, above the last, within the concurrent-stream limit
        if client_side(conn) or not sid & 1 or sid <= conn.highest_inbound_stream_id:
            return None
        if open_streams(conn, 1) + 1 > streams_allowed(conn.local_settings):
            return None  # (h2 refuses it; counting the open streams drops the closed ones, as h2's count does)
    elif stream.state_machine.state not in RECEIVING:
        return None
    fields = _fields(conn.decoder, block)
    events = [] if QUIET else conn.state_machine.process_input(ConnectionInputs.RECV_HEADERS)
    if stream is None:
        stream = new_stream(conn, sid, False)
    got = _stream_headers(stream, fields, end)
    return events + got if events else got


def _fields(decoder: Any, block: bytes) -> Fields:
    """h2's `_decode_headers(decoder, block)`; a block the `RepeatDecoder` keeps is answered here at once, from
    the same `kept_now` its `decode` answers from (http2/hpack_kept.py), without the two Python-level calls."""
    if type(decoder) is RepeatDecoder and type(block) is bytes and len(block) <= MAX_BLOCK:
        kept = kept_now(decoder).get(block)
        if kept is not None:
            return list(kept)
    return cast(Fields, _decode_headers(decoder, block))  # (hpack's decoder gives a list of 2-tuples)


def _stream_headers(stream: H2Stream, fields: Fields, end: bool) -> list[Any]:
    """h2's `H2Stream.receive_headers` with inbound validation and normalisation off (nothing else differs; its
    `is_informational_response` and `_initialize_content_length` are written out below)."""
    if _informational(fields):
        if end:
            raise ProtocolError("Cannot set END_STREAM on informational responses")
        given = RECV_INFORMATIONAL_HEADERS
    else:
        given = RECV_HEADERS
    machine = stream.state_machine
    events = step(machine, given)
    event = events[0]
    if end:
        ended = step(machine, RECV_END_STREAM)
        event.stream_ended = ended[0]
        events += ended
    stream._expected_content_length = 0 if stream.request_method == b"HEAD" else _content_length(fields)
    if isinstance(event, TrailersReceived) and not end:
        raise ProtocolError("Trailers must have END_STREAM set")
    event.headers = list(fields)
    return events


def _informational(fields: Fields) -> bool:
    """h2's `is_informational_response`: the first `:status` among the leading pseudo-header fields is 1xx."""
    for name, value in fields:
        if not name or name[0] != 0x3A:  # (':')
            return False
        if name == b":status":
            return bool(value) and value[0] == 0x31  # ('1')
    return False


def _content_length(fields: Fields) -> int | None:
    """The length the fields' `content-length` says, refused as h2 refuses it (not digits; two that differ)."""
    found: int | None = None
    for name, value in fields:
        if name == b"content-length":
            if not value.isdigit():
                raise ProtocolError(f"Invalid content-length header: {value!r}")
            length = int(value, 10)
            if found is None:
                found = length
            elif length != found:
                raise ProtocolError(f"Conflicting content-length headers: {found} and {length}")
    return found


__all__ = ["receive"]
