"""h2's connection state machine as both HTTP/2 connections use it (http2/server.py, http2/client_setup.py).

What it receives is read by http2/frames_in.py: the common HEADERS and DATA frames below h2, the rest by h2.

`QuietConnection` is h2's `H2Connection` but for one line: h2 formats every frame it receives (`repr`, flags and a
hex dump of the payload) for its trace log before it calls the logger, even when the logger does nothing, which
is 3-5% of what a proxied request costs. `_receive_frame` below is h2 4.4's (MIT licence) without that line;
`tests/unit/http2/test_h2_machine.py` fails when the installed h2's method is no longer the one copied here.
It remembers at most `CLOSED_STREAMS_KEPT` closed streams (h2: 65,536, some 10 MB a connection).
"""

from __future__ import annotations

from h2._typing import Buffer
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import Event
from h2.exceptions import StreamClosedError, StreamIDTooLowError
from hyperframe.frame import Frame, RstStreamFrame

from meshbatch.http2.frames_in import receive

# Closed streams a connection remembers (how each was closed: a late frame on one closed by a reset is a stream
# error, on one closed by END_STREAM ignored or refused as RFC 9113 5.1 allows). h2 keeps 65,536 a connection,
# about 10 MB each under steady load (an id, an entry and a node of its ordered dict a stream): 16 busy
# connections held 150 MB more after a minute, and a client's many connections could hold as much as it liked.
# A listener's connections keep ten times the streams they let a client open at once (`max_concurrent_streams`,
# 100 by default), at least 1,024 (http2/connection.py); an upstream connection 1,024. A late frame on a stream
# forgotten is handled as h2 handles one beyond its 65,536: DATA is a stream error, HEADERS a connection error.
CLOSED_STREAMS_KEPT = 1024


class QuietConnection(H2Connection):
    """h2's `H2Connection` without the per-frame trace formatting, its common frames read below it, and fewer
    closed streams remembered; see the module docstring."""

    MAX_CLOSED_STREAMS = CLOSED_STREAMS_KEPT

    def receive_data(self, data: Buffer) -> list[Event]:
        return receive(self, data if type(data) is bytes else bytes(data))

    def _receive_frame(self, frame: Frame) -> list[Event]:
        events: list[Event]
        try:
            frames, events = self._frame_dispatch_table[frame.__class__](frame)
        except StreamClosedError as e:
            # closed by RST_STREAM: a stream error (RST_STREAM back); else a connection error
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = e.error_code
                self._prepare_for_sending([f])
                events = e._events
            else:
                raise
        except StreamIDTooLowError as e:
            # a stream already cleaned up: a stream error when it was reset, else a connection error
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = ErrorCodes.STREAM_CLOSED
                self._prepare_for_sending([f])
                events = []
            elif self._stream_is_closed_by_end(e.stream_id):
                raise StreamClosedError(e.stream_id) from e
            else:
                raise
        else:
            self._prepare_for_sending(frames)
        return events


__all__ = ["CLOSED_STREAMS_KEPT", "QuietConnection"]
