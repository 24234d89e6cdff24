"""A whole answer in one go, below h2: its HEADERS (and CONTINUATION) frames, at most one DATA frame and its
trailers (a gRPC answer's status), the last with END_STREAM, written straight into h2's outbound buffer.

h2's `send_headers` and `send_data` cost more than the rest of an answer: per call they encode the fields to UTF-8
again, build the validation flags and frame objects, run the connection's state machine, log at debug level
several times and serialize the frames flag by flag. For the answer most requests get (the request is over, the
body fits one frame and both flow-control windows) `send_whole` does the same thing directly: the stream's state
machine takes the same inputs h2's own calls would give it (so h2 knows the stream is closed, and a frame the
client sends on it afterwards is refused as before), both windows shrink by the body, and the bytes are the frames
h2 would have written. Anything else (the connection not open, the request still arriving, a body that needs more
than one frame or more window) is left to h2: `send_whole` then returns False and has changed nothing.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from h2.connection import ConnectionState, H2Connection
from h2.stream import H2Stream, StreamState

from meshbatch.http.message import Headers
from meshbatch.http2.hpack_fields import encode_fields
from meshbatch.http2.hpack_out import StaticEncoder
from meshbatch.http2.steps import SEND_DATA, SEND_END_STREAM, SEND_HEADERS, step

OPEN: Final = (ConnectionState.SERVER_OPEN, ConnectionState.CLIENT_OPEN)
_FRAME_HEAD: Final = struct.Struct(">BHBBI")  # length (24 bits), type, flags, stream id
DATA: Final = 0x0
HEADERS: Final = 0x1
CONTINUATION: Final = 0x9
END_STREAM: Final = 0x1
END_HEADERS: Final = 0x4


def frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    size = len(payload)
    return _FRAME_HEAD.pack(size >> 16, size & 0xFFFF, kind, flags, stream_id) + payload


def encoded(conn: H2Connection, fields: Headers) -> bytes:
    """`conn.encoder.encode(fields)`; the proxy's `StaticEncoder` with no table-size change to signal is asked
    straight, without its Python-level method."""
    encoder: Any = conn.encoder
    if type(encoder) is StaticEncoder and not encoder.table_size_changes:
        return encode_fields(encoder._kept, fields, b"")
    block: bytes = encoder.encode(fields)
    return block


def header_frames(stream_id: int, block: bytes, max_frame: int, end_stream: bool) -> bytes:
    """A header block as HEADERS and, beyond `max_frame`, CONTINUATION frames (END_STREAM on HEADERS only)."""
    first = END_STREAM if end_stream else 0
    if len(block) <= max_frame:
        return frame(HEADERS, first | END_HEADERS, stream_id, block)
    pieces = [block[i:i + max_frame] for i in range(0, len(block), max_frame)]
    out = [frame(HEADERS, first, stream_id, pieces[0])]
    out += [frame(CONTINUATION, 0, stream_id, piece) for piece in pieces[1:-1]]
    out.append(frame(CONTINUATION, END_HEADERS, stream_id, pieces[-1]))
    return b"".join(out)


def send_whole(conn: H2Connection, stream_id: int, fields: Headers, body: bytes,
               trailers: Headers | None = None) -> bool:
    """Send a final answer, head, body and trailers (a gRPC answer's status), ending the stream; False (nothing
    done) when h2 must; see the module docstring."""
    if conn.state_machine.state not in OPEN:
        return False
    stream = conn.streams.get(stream_id)
    if stream is None:
        return False
    machine = stream.state_machine
    if machine.state != StreamState.HALF_CLOSED_REMOTE or machine.headers_sent:
        return False
    if not fits(conn, len(body), stream.outbound_flow_control_window):
        return False
    step(machine, SEND_HEADERS)
    head = header_frames(stream_id, encoded(conn, fields), conn.max_outbound_frame_size,
                         not body and not trailers)
    finish(conn, stream, head, body, trailers)
    return True


def fits(conn: H2Connection, size: int, window: int) -> bool:
    """A body of `size` bytes goes in one DATA frame, within the connection's window and the stream's `window`."""
    return not size or (size <= conn.max_outbound_frame_size and size <= conn.outbound_flow_control_window
                        and size <= window)


def finish(conn: H2Connection, stream: H2Stream, head: bytes, body: bytes, trailers: Headers | None = None) -> None:
    """After the head's frames (`head`; the stream took SEND_HEADERS): the body's one DATA frame, the trailers and
    the end, into h2's outbound buffer, with the stream's state and both windows moved as h2 moves them."""
    machine = stream.state_machine
    out = head
    size = len(body)
    if size:
        step(machine, SEND_DATA)
        out += frame(DATA, 0 if trailers else END_STREAM, stream.stream_id, body)
        stream.outbound_flow_control_window -= size
        conn.outbound_flow_control_window -= size
    if trailers:
        step(machine, SEND_HEADERS)  # (h2 takes the second block for trailers)
        out += header_frames(stream.stream_id, encoded(conn, trailers), conn.max_outbound_frame_size, True)
    step(machine, SEND_END_STREAM)
    conn._data_to_send += out


__all__ = ["DATA", "END_HEADERS", "END_STREAM", "HEADERS", "OPEN", "finish", "fits", "frame", "header_frames",
           "send_whole"]
