"""Received DATA handed back to the peer's flow-control windows: h2's `acknowledge_received_data` written out.

Every DATA frame read is credited back once its bytes are taken (a request's body, an answer's), so h2's method
runs for every body of every call: a debug-log call, its argument checks, a stream look-up that raises for a
stream gone, and two window managers' `process_bytes`, all Python-level calls. Nearly always nothing is sent:
h2's managers hand credit back only once half of a window was taken (or 1,024 bytes of a window used up). Here
the same steps run natively and a WINDOW_UPDATE frame is made, with h2's own frame class and queue, only when h2
would make it. `credit_connection` and `credit_stream` are its two halves, for bodies whose stream is credited
later than their connection (http2/uploads.py). tests/unit/http2/test_h2_credit.py compares all three with h2's
method over any sequence of frames and credits.
"""

from __future__ import annotations

from h2.connection import H2Connection
from h2.stream import STREAM_OPEN
from h2.windows import WindowManager
from hyperframe.frame import WindowUpdateFrame


def acknowledge(conn: H2Connection, sid: int, size: int) -> None:
    """`conn.acknowledge_received_data(size, sid)` for a stream id above 0 and a size not below 0 (what every
    caller here has), a stream gone or never opened included (h2 would raise for one never opened)."""
    credit_connection(conn, size)
    credit_stream(conn, sid, size)


def credit_connection(conn: H2Connection, size: int) -> None:
    """The connection-level half of h2's `acknowledge_received_data`."""
    _update(conn, 0, _processed(conn._inbound_flow_control_window_manager, size))


def credit_stream(conn: H2Connection, sid: int, size: int) -> None:
    """The stream-level half (nothing for a stream gone or closed: its window no longer matters)."""
    stream = conn.streams.get(sid)
    if stream is None or not STREAM_OPEN[stream.state_machine.state]:
        return
    _update(conn, sid, _processed(stream._inbound_window_manager, size))


def _update(conn: H2Connection, sid: int, increment: int) -> None:
    """A WINDOW_UPDATE of `increment` for `sid` (0: the connection) into h2's queue; nothing for 0."""
    if increment:
        frame = WindowUpdateFrame(sid)
        frame.window_increment = increment
        conn._prepare_for_sending([frame])


def _processed(manager: WindowManager, size: int) -> int:
    """h2's `WindowManager.process_bytes` (and its `_maybe_update_window`): the increment to send, or 0."""
    processed = manager._bytes_processed + size
    manager._bytes_processed = processed
    if not processed:
        return 0
    current = manager.current_window_size
    largest = manager.max_window_size
    if (current == 0 and processed > min(1024, largest // 4)) or processed >= largest // 2:
        increment = min(processed, largest - current)
        manager._bytes_processed = 0
        manager.current_window_size = current + increment
        return increment
    return 0


__all__ = ["acknowledge", "credit_connection", "credit_stream"]
