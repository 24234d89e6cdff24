"""A whole request in one go, below h2: the upstream connection's side of http2/whole_answer.py.

A request whose body is all here and fits one frame and both windows (a unary gRPC call, a small POST, a GET) goes
out as HEADERS (CONTINUATION beyond a frame) and at most one DATA frame, the last with END_STREAM, written straight
into h2's outbound buffer. The stream is opened as h2's `send_headers` opens it (`_begin_new_stream` after h2's
sweep of closed streams, both as http2/steps.py writes them out), its state machine takes the inputs h2's calls
would give it, its request method is kept (an answer to HEAD has no body) and both windows shrink by the body: the
same bytes and the same state as `send_headers` + `send_data`. Anything else (the connection not yet open, an
upload, trailers, a body needing more than one frame or more window) is left to h2: `send_request` returns False
having changed nothing.
"""

from __future__ import annotations

from h2.connection import H2Connection

from meshbatch.http.message import Headers
from meshbatch.http2.steps import INITIAL_WINDOW_SIZE, SEND_HEADERS, new_stream, open_streams, setting, step
from meshbatch.http2.whole_answer import OPEN, encoded, finish, fits, header_frames


def send_request(conn: H2Connection, stream_id: int, fields: Headers, body: bytes) -> bool:
    """Open `stream_id` with a whole request; False (nothing done) when h2 must. `fields` start with `:method`."""
    if conn.state_machine.state not in OPEN or stream_id in conn.streams:
        return False
    if stream_id <= conn.highest_outbound_stream_id or not stream_id & 1:
        return False  # (h2 refuses it)
    if not fits(conn, len(body), setting(conn.remote_settings, INITIAL_WINDOW_SIZE, 65_535)):  # (a new stream's)
        return False
    open_streams(conn, 1)  # (h2's sweep of closed streams, as its send_headers makes it)
    stream = new_stream(conn, stream_id, True)
    step(stream.state_machine, SEND_HEADERS)
    stream.request_method = fields[0][1]
    for name, value in fields:
        if name == b":authority":
            stream._authority = value
            break
    finish(conn, stream, header_frames(stream_id, encoded(conn, fields), conn.max_outbound_frame_size, not body),
           body)
    return True


__all__ = ["send_request"]
