"""One upstream HTTP/1.1 connection's protocol state, without I/O: a request goes out, bytes come in, events
come out (the head of a streamed answer, pieces of its body, the end, an error).

    state        what the connection is doing                     leaves by
    IDLE         at a message boundary: a request may be sent     SEND, STRAY (a byte nobody asked for), CLOSE
    SENT         a request is out, no byte of its answer yet      BYTES, FAIL, CLOSE
    HEAD         the answer's head (interim ones too) is read     HEAD_DONE, COMPLETE, FAIL, CLOSE
    BODY         its body is read whole                           STREAM, COMPLETE, FAIL, CLOSE
    STREAMING    its body goes to a stream as it arrives          COMPLETE, FAIL, CLOSE
    MUST_CLOSE   the answer is over; the connection is single-use CLOSE
    CLOSED       gone                                             -

The answer carries end-to-end headers only: hop-by-hop ones (and those named in Connection) are dropped while
reading. Answers are framed by Content-Length, chunked encoding, or the connection closing (`eof`).

Reuse (as Envoy and nginx decide it): an answer that is complete must leave the connection exactly at a
message boundary, or the connection is never reused (MUST_CLOSE). Bytes after the answer (the head of a
second response, garbage, even blank lines), an answer that began before our request was all written, an
interim answer other than 100, a close-delimited answer, an answer to HEAD, `Connection: close`: each makes
the connection single-use. COMPLETE is reported only once the whole chunk that completed the answer was parsed
(never from inside a parser callback), so the decision has seen every byte that arrived with it.
"""

from __future__ import annotations

from typing import Final

import httptools

from meshbatch.core.transitions import IllegalTransition
from meshbatch.errors import BadGateway, GatewayTimeout, ProxyError, UpstreamReset
from meshbatch.http.answer_head import AnswerHead, answer_head
from meshbatch.http.message import Headers, Response
from meshbatch.http.serialize import connection_tokens
from meshbatch.http.trailers import NO_TRAILERS, trailer_section

MAX_HEADER_BYTES: Final = 65_536
_BLANK: Final = (13, 10)  # CR, LF: what llhttp skips, silently, before a status line

IDLE: Final = 0
SENT: Final = 1
HEAD: Final = 2
BODY: Final = 3
STREAMING: Final = 4
MUST_CLOSE: Final = 5
CLOSED: Final = 6
STATE_NAMES: Final = ("idle", "sent", "head", "body", "streaming", "must_close", "closed")

SEND: Final = 0
BYTES: Final = 1
HEAD_DONE: Final = 2
STREAM: Final = 3
COMPLETE: Final = 4  # (to IDLE when reusable, else MUST_CLOSE)
FAIL: Final = 5
CLOSE: Final = 6
STRAY: Final = 7
EVENT_NAMES: Final = ("send", "bytes", "head_done", "stream", "complete", "fail", "close", "stray")

_TABLE: Final[dict[int, int]] = {
    IDLE << 4 | SEND: SENT,
    IDLE << 4 | STRAY: CLOSED,
    SENT << 4 | BYTES: HEAD,
    HEAD << 4 | HEAD_DONE: BODY,
    HEAD << 4 | COMPLETE: IDLE,
    BODY << 4 | STREAM: STREAMING,
    BODY << 4 | COMPLETE: IDLE,
    STREAMING << 4 | COMPLETE: IDLE,
}
_TABLE.update({state << 4 | CLOSE: CLOSED for state in range(len(STATE_NAMES))})  # (from every state)
_TABLE.update({state << 4 | FAIL: CLOSED for state in range(len(STATE_NAMES)) if state != CLOSED})
TRANSITIONS: Final = {(key >> 4, key & 15): state for key, state in _TABLE.items()}
# The same as a list indexed by state << 4 | event (-1: refused), for the transitions taken per request.
_NEXT: Final[list[int]] = [_TABLE.get(key, -1) for key in range(len(STATE_NAMES) << 4)]

# What `feed` and `eof` report.
NOTHING: Final = 0  # more bytes are needed
STARTED: Final = 1  # the answer streams (see `start`): its head is ready (`head_response`), the body follows
DATA: Final = 2  # more of a streamed body (`take_body`)
ENDED: Final = 3  # the answer is over: `response()` (read whole) or the rest of the stream (`take_body`)
FAILED: Final = 4  # the exchange failed (`error`); the connection must close
UNASKED: Final = 5  # bytes while idle: the upstream is out of step; the connection must close


class ResponseReader:
    """See the module docstring. `feed` never raises for what the upstream sends."""

    __slots__ = ("_bodied", "_body", "_body_len", "_chunked", "_complete", "_dirty", "_framed", "_head", "_head_buf",
                 "_head_total", "_headers", "_length", "_named", "_parser", "_read", "_rx", "_status", "_stream_limit",
                 "_streaming", "_tail", "error", "keep_alive", "max_response_bytes", "state", "trailers")

    def __init__(self, max_response_bytes: int) -> None:
        self.max_response_bytes = max_response_bytes
        self._parser = httptools.HttpResponseParser(self)
        self.state = IDLE
        self.keep_alive = True  # false once anything makes the connection single-use
        self._tail = b""  # chunked: the bytes since the last read with body bytes (the end, trailers: trailers.py)
        self._bodied = False  # (set per answer once it says it is chunked)
        self._reset(False, 0)

    def _reset(self, head: bool, stream_limit: int) -> None:
        self._head = head
        self._stream_limit = stream_limit
        self.error: ProxyError | None = None
        self._status = 0
        self._headers: Headers = []
        self._read: AnswerHead | None = None  # the head as read (http/answer_head.py)
        self._body: list[bytes] = []
        self._body_len = 0
        self._head_buf = b""
        self._framed = False
        self._chunked = False
        self._named = b""
        self._length = -1  # the answer's Content-Length, when it has one
        self._streaming = False  # the body outgrew the stream limit
        self._complete = False  # the answer ended (reported once the current chunk is parsed)
        self._dirty = False  # something makes this connection single-use (see the module docstring)
        self._rx = 0  # bytes received for this exchange
        self._head_total = 0  # bytes of the answer's heads (interim ones included) from its first byte
        self.trailers: Headers | None = None  # a chunked answer's, at its end (a streamed one's too)

    def _go(self, event: int) -> None:
        state = _NEXT[self.state << 4 | event]
        if state < 0:
            raise self._illegal(event)
        self.state = state

    def _illegal(self, event: int) -> IllegalTransition:
        return IllegalTransition.of("upstream connection", STATE_NAMES[self.state], EVENT_NAMES[event])

    @property
    def reusable(self) -> bool:
        """Idle at a clean message boundary: the next request may be written."""
        return self.state == IDLE and self.keep_alive

    @property
    def length(self) -> int:
        """The answer's Content-Length (-1: none)."""
        return self._length

    @property
    def stream_limit(self) -> int:
        return self._stream_limit

    def start(self, head: bool, stream_limit: int = 0) -> None:
        """A request goes out (`head`: to HEAD). With a `stream_limit`, a larger body is STARTED as a stream, and
        so is one of unknown length that a read leaves unfinished after some body (events, long polls)."""
        moved = _NEXT[self.state << 4 | SEND]  # (`_go`, inline: taken per request)
        if moved < 0:
            raise self._illegal(SEND)
        self.state = moved
        self._reset(head, stream_limit)

    def _end(self, error: ProxyError) -> int:
        self.error = error
        self.keep_alive = False
        self._go(FAIL)
        return FAILED

    def fail(self, error: ProxyError) -> None:
        """The exchange is given up (timeout, abandoned): the connection closes."""
        self.keep_alive = False
        if self.error is None:
            self.error = error
        if self.state != CLOSED:
            self._go(FAIL)

    def abandon(self) -> None:
        """The exchange is given up mid-way (its caller went away): the connection closes."""
        self.keep_alive = False
        if self.state != CLOSED:
            self._go(FAIL)

    def timeout_error(self) -> GatewayTimeout:
        return GatewayTimeout("upstream_timeout", "the answer did not end before the timeout"
                              if self.state == STREAMING else "no response before the timeout")

    def closed(self) -> None:
        self.keep_alive = False
        self._go(CLOSE)

    # input ---------------------------------------------------------------------------------------
    def feed(self, data: bytes, unsent: int) -> int:
        """Bytes from the upstream; `unsent`: how much of our request is still unwritten. An event (above)."""
        state = self.state
        if state == SENT:
            moved = _NEXT[self.state << 4 | BYTES]  # (`_go`, inline: taken per request)
            if moved < 0:
                raise self._illegal(BYTES)
            self.state = moved
            state = HEAD
            if unsent:
                # The answer began before our request was all written: the upstream may still be reading our
                # body, and would take the rest of it for a new request.
                self._dirty = True
        elif state == CLOSED:
            return NOTHING
        elif state in (IDLE, MUST_CLOSE):
            self.keep_alive = False  # bytes nobody asked for: never reuse this connection
            if state == IDLE:
                self._go(STRAY)
            return UNASKED
        self._rx += len(data)
        if state == HEAD:
            head = self._head_buf = self._head_buf + data if self._head_buf else data
            if len(head) > MAX_HEADER_BYTES and head.find(b"\r\n\r\n", 0, MAX_HEADER_BYTES) < 0:
                return self._end(BadGateway("upstream_headers_too_large"))
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = self.error or exc.__context__
            return self._end(cause if isinstance(cause, ProxyError) else BadGateway("bad_upstream_response", str(exc)))
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if not self._complete:
                return self._end(BadGateway("bad_upstream_response", str(exc).split(": ", 1)[-1]))
            self._dirty = True  # bytes after the answer that are not even a message: the answer stands
        if self._complete:
            if self._dirty or not self._at_boundary(data):
                self.keep_alive = False
            moved = _NEXT[self.state << 4 | COMPLETE]  # (`_go`, inline: taken per request)
            if moved < 0:
                raise self._illegal(COMPLETE)
            self.state = moved if self.keep_alive else MUST_CLOSE
            return ENDED
        if self._chunked:
            if self._bodied:
                self._tail = data
                self._bodied = False
            else:
                self._tail += data  # chunk framing only (or a trailer section), bounded
                if len(self._tail) > 2 * MAX_HEADER_BYTES:
                    return self._end(BadGateway("upstream_headers_too_large", "chunk framing or trailers too large"))
        if self._streaming or (self._stream_limit and self._length < 0 and self._body and self.state == BODY):
            if self.state == BODY:  # (one of unknown length that paused: its pieces go on as they come)
                self._streaming = True
                self._go(STREAM)
                return STARTED
            if self._body:
                return DATA
        return NOTHING

    def eof(self) -> int:
        """The upstream closed the connection: ENDED (a close-delimited answer), FAILED, or NOTHING (idle)."""
        state = self.state
        self.keep_alive = False
        if state in (STREAMING, BODY):
            if self._close_delimited():
                self._go(COMPLETE)
                self.state = MUST_CLOSE
                return ENDED
            return self._end(UpstreamReset("upstream_reset", "connection closed mid-body"
                                           if state == STREAMING else "connection closed mid-response"))
        if state == SENT:
            return self._end(UpstreamReset("upstream_reset", "connection closed before any response"))
        if state == HEAD:
            return self._end(UpstreamReset("upstream_reset", "connection closed mid-response"))
        return NOTHING

    # output --------------------------------------------------------------------------------------
    def _end_to_end(self) -> Headers:
        headers = self._headers
        if self._named:  # headers named in Connection are hop-by-hop too
            named = connection_tokens([(b"connection", self._named)])
            headers = [h for h in headers if h[0] not in named]
        return headers

    def take_body(self) -> bytes:
        """The body bytes read since the last take."""
        body = self._body
        if not body:
            return b""
        self._body = []
        return body[0] if len(body) == 1 else b"".join(body)

    def response(self) -> Response:
        """The whole answer (after ENDED, when it was not STARTED as a stream)."""
        body = self._body
        self._body = []
        headers = self._headers if not self._named else self._end_to_end()
        response = Response(self._status, headers, body[0] if len(body) == 1 else b"".join(body))
        response.trailers = self.trailers
        read = self._read
        if read is not None:  # its fields as encoded once (the answer's head to the caller starts with them)
            response.head_fields = read.fields
            response.head_block = read.block
        return response

    def head_response(self) -> Response:
        """The head of an answer STARTED as a stream."""
        return Response(self._status, self._end_to_end())

    # inside --------------------------------------------------------------------------------------
    def _at_boundary(self, data: bytes) -> bool:
        """Whether the answer ended exactly at the end of `data` (no byte after it)."""
        if self._head:
            return False  # an answer to HEAD is cut at its head whatever its framing says: never reused
        if not self._chunked:  # Content-Length or no body: the count is exact
            return self._rx == self._head_total + self._body_len
        # Chunked: the framing bytes are not counted, but the message's last five bytes are always a non-blank
        # byte then CRLF CRLF (the last chunk's size or extension, or a trailer); any blank line after them (the
        # only bytes llhttp swallows without a callback) breaks that pattern. Other bytes began a message.
        tail = data[-5:] if len(data) >= 5 else (self._tail + data)[-5:]
        if tail[1:] != b"\r\n\r\n" or len(tail) != 5 or tail[0] in _BLANK:
            return False
        if not data.endswith(NO_TRAILERS):  # (its trailers, if any: the message ends exactly here)
            self.trailers = trailer_section(data if self._bodied else self._tail + data)
        return True

    def _close_delimited(self) -> bool:
        """A response with neither Content-Length nor chunked framing ends when the connection closes."""
        return not self._framed and self._status not in (204, 304)

    # httptools callbacks -------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self._complete:
            self._dirty = True  # a second message after the answer: never reuse the connection

    def on_headers_complete(self) -> None:
        if self._complete:
            return  # the head of a message after the answer (already marked)
        # Headers are cut from the buffered head in one pass (llhttp has validated its syntax): much cheaper
        # than a Python callback per header. Blank lines before a status line are skipped, as llhttp does.
        buf = self._head_buf
        if buf and buf[0] in _BLANK:
            buf = buf.lstrip(b"\r\n")
        end = buf.find(b"\r\n\r\n")
        self._head_buf = b""
        self._head_total = self._rx - len(buf) + end + 4
        status = self._status = self._parser.get_status_code()
        if 100 <= status < 200:
            if status == 101:  # we never ask for an upgrade: whatever follows is not HTTP we can frame
                self.error = BadGateway("bad_upstream_response", "101 Switching Protocols was not asked for")
                raise self.error
            if status != 100:
                self._dirty = True  # 102, 103 or an unknown interim answer: skipped, the connection not reused
            self._head_buf = buf[end + 4:]  # the final answer's head follows in the same bytes
            return
        moved = _NEXT[self.state << 4 | HEAD_DONE]  # (`_go`, inline: taken per request)
        if moved < 0:
            raise self._illegal(HEAD_DONE)
        self.state = moved
        read = self._read = answer_head(buf[:end])  # (fields and framing, read once per distinct head)
        if read.fields:
            self._headers = list(read.fields)
        if read.framed:
            self._framed = True
            self._length = read.length
        if read.coded:
            self._chunked = read.chunked
            self._tail, self._bodied = b"", False
        self._named = read.named
        if status == 204 or status == 304:
            self._chunked = False  # no body whatever the framing headers say: the message ends with its head
            self._length = -1
        if self._length > self.max_response_bytes and not self._head:
            # Kept here: the parser wraps what a callback raises, and a compiled build may not chain it as the
            # wrapper's context.
            self.error = BadGateway("upstream_response_too_large",
                                    f"response of {self._length} bytes exceeds {self.max_response_bytes}")
            raise self.error
        if self._stream_limit and self._length > self._stream_limit and not self._head:
            self._streaming = True  # too large to hold: the head goes out once this chunk is read
        if self._head:
            # A HEAD answer has no body whatever its framing headers say; httptools cannot be told so,
            # so it ends here and the connection is not reused.
            self._complete = True
            self.keep_alive = False

    def on_body(self, body: bytes) -> None:
        if self._complete:
            return  # the body of an answer to HEAD, or of a message after the answer
        self._bodied = True
        self._body_len += len(body)
        if self._body_len > self.max_response_bytes:
            self.error = BadGateway("upstream_response_too_large", f"response exceeds {self.max_response_bytes} bytes")
            raise self.error
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._complete:
            return
        if 100 <= self._status < 200:
            self._status = 0  # an interim answer ended; the final one follows
            return
        self._complete = True
        if not self._parser.should_keep_alive():
            self.keep_alive = False


__all__ = ["CLOSED", "DATA", "ENDED", "FAILED", "IDLE", "MUST_CLOSE", "NOTHING", "STARTED", "STATE_NAMES",
           "TRANSITIONS", "UNASKED", "IllegalTransition", "ResponseReader"]
