"""The downstream HTTP/1.1 connection as a state machine, without I/O: bytes in, requests and bytes out.

The I/O shell (http/server.py) feeds what it reads to `receive`, takes requests with `take` when the machine
says one is due (`due`), hands back each answer to `answer` and writes the bytes the machine returns; its one
timer asks `expire` what a deadline means. The machine decides everything else, in one place each:

    state        what the connection is doing                 leaves by
    IDLE         nothing served, nothing half-read            BEGIN (bytes of a head), DISPATCH, FAIL, CLOSE
    RECEIVING    a request is being read, none is served      READ (it is whole), DISPATCH, FAIL, CLOSE
    DISPATCHED   a request awaits its answer                  ANSWER / ANSWER_CLOSE, STREAM, CLOSE
    SENDING      an answer's body streams out                 END / END_CLOSE, CLOSE
    MUST_CLOSE   no more requests: close once output is out   CLOSE
    CLOSED       gone                                         -

Anything else is refused (`IllegalTransition`). Requests read while one is served wait in the parser's queue
(pipelining): answers go out in order. A protocol error (malformed bytes, a limit, a timeout) is answered once
the requests read before it are; then the connection closes. Keep-alive or close is decided by `_keeps` only.
"""

from __future__ import annotations

from typing import Final

from meshbatch.core.transitions import IllegalTransition
from meshbatch.errors import ProxyError, RequestTimeout
from meshbatch.http.chunked import LAST_CHUNK, chunk, last_chunk
from meshbatch.http.message import Headers, Request, Response
from meshbatch.http.parser import RequestParser
from meshbatch.http.serialize import encode_response, encode_stream_head, local_reply
from meshbatch.http.serving import ServerSettings

CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"

IDLE: Final = 0
RECEIVING: Final = 1
DISPATCHED: Final = 2
SENDING: Final = 3
MUST_CLOSE: Final = 4
CLOSED: Final = 5
STATE_NAMES: Final = ("idle", "receiving", "dispatched", "sending", "must_close", "closed")

BEGIN: Final = 0  # the first bytes of a request's head arrived
READ: Final = 1  # the request being read is whole (it waits to be taken)
DISPATCH: Final = 2  # a request was taken to be answered
ANSWER: Final = 3  # its answer is out, the connection stays open
ANSWER_CLOSE: Final = 4  # its answer is out, the connection closes
STREAM: Final = 5  # its answer's head is out, its body follows
END: Final = 6  # the streamed body ended, the connection stays open
END_CLOSE: Final = 7  # the streamed body ended, the connection closes
FAIL: Final = 8  # a protocol error (or half-close) with nothing served: the connection closes
CLOSE: Final = 9  # the connection is gone
EVENT_NAMES: Final = ("begin", "read", "dispatch", "answer", "answer_close", "stream", "end", "end_close",
                      "fail", "close")

# (state, event) -> state, as state << 4 | event.
_TABLE: Final[dict[int, int]] = {
    IDLE << 4 | BEGIN: RECEIVING,
    IDLE << 4 | DISPATCH: DISPATCHED,
    IDLE << 4 | FAIL: MUST_CLOSE,
    IDLE << 4 | CLOSE: CLOSED,
    RECEIVING << 4 | READ: IDLE,
    RECEIVING << 4 | DISPATCH: DISPATCHED,
    RECEIVING << 4 | FAIL: MUST_CLOSE,
    RECEIVING << 4 | CLOSE: CLOSED,
    DISPATCHED << 4 | ANSWER: IDLE,
    DISPATCHED << 4 | ANSWER_CLOSE: MUST_CLOSE,
    DISPATCHED << 4 | STREAM: SENDING,
    DISPATCHED << 4 | CLOSE: CLOSED,
    SENDING << 4 | END: IDLE,
    SENDING << 4 | END_CLOSE: MUST_CLOSE,
    SENDING << 4 | CLOSE: CLOSED,
    MUST_CLOSE << 4 | CLOSE: CLOSED,
    CLOSED << 4 | CLOSE: CLOSED,
}
TRANSITIONS: Final = {(key >> 4, key & 15): state for key, state in _TABLE.items()}
# The same as a list indexed by state << 4 | event (-1: refused), for the transitions taken per request.
_NEXT: Final[list[int]] = [_TABLE.get(key, -1) for key in range(len(STATE_NAMES) << 4)]

# What `step` says is next.
NOTHING_NEXT: Final = 0
NEXT_REQUEST: Final = 1
NEXT_ERROR: Final = 2
NEXT_CLOSE: Final = 3
NEXT_CONTINUE: Final = 4

# What `expire` says besides the time of the next look.
EXPIRED_ERROR: Final = -1.0  # a header or body timeout: answer `error` (see `error_reply`), then close
EXPIRED_IDLE: Final = -2.0  # the idle timeout: close


class ServerConnection:
    """One downstream connection's protocol state. See the module docstring."""

    __slots__ = ("_chunked", "_close_delimited", "current", "eof", "error", "head_started",
                 "last_activity", "parser", "settings", "state")

    def __init__(self, parser: RequestParser, settings: ServerSettings, now: float = 0.0) -> None:
        self.parser = parser
        self.settings = settings  # of the request being served (a reload applies from the next one)
        self.state = IDLE
        self.current: Request | None = None  # the request being served (its answer not yet all out)
        self.error: ProxyError | None = None  # a protocol error to answer once the requests before it are
        self.eof = False  # the client half-closed: its pending answers go out, then the connection closes
        self.head_started = 0.0  # when the head being read began (0.0: none is)
        self.last_activity = now
        self._chunked = False  # the answer streaming now is chunked for the client
        self._close_delimited = False  # ... or ends when the connection closes (an HTTP/1.0 client)

    def _go(self, event: int) -> None:
        state = _NEXT[self.state << 4 | event]
        if state < 0:
            raise self._illegal(event)
        self.state = state

    def _illegal(self, event: int) -> IllegalTransition:
        return IllegalTransition.of("server connection", STATE_NAMES[self.state], EVENT_NAMES[event])

    @property
    def busy(self) -> bool:
        """A request is being read, waits, or is being answered."""
        parser = self.parser
        return self.state == DISPATCHED or self.state == SENDING or parser.in_message or bool(parser.ready)

    # input ---------------------------------------------------------------------------------------
    def receive(self, data: bytes, now: float) -> bool:
        """Bytes from the client. True when a head has begun to be read (the header timeout runs from now)."""
        state = self.state
        if state in (CLOSED, MUST_CLOSE) or self.error is not None:
            return False
        self.last_activity = now
        parser = self.parser
        try:
            parser.feed(data, now)
        except ProxyError as error:
            self.fail(error)
            return False
        if state == IDLE and parser.in_message:
            self._go(BEGIN)
        elif state == RECEIVING and not parser.in_message:
            self._go(READ)
        # A head is being read: a partial one, or, on an idle connection, bytes that began none (llhttp skips
        # CRLFs before a request; a client sending only those must not hold the connection past the timeout).
        if not parser.headers_done and (parser.in_message or not (parser.ready or self.busy)):
            if not self.head_started:
                self.head_started = now
                return True
        else:
            self.head_started = 0.0
        return False

    def half_closed(self) -> bool:
        """The client sent its last byte. True: close now (nothing is pending)."""
        self.eof = True
        if (self.state == IDLE or self.state == RECEIVING) and not self.parser.ready:
            self._go(FAIL)
            return True
        return False

    def fail(self, error: ProxyError) -> None:
        """A protocol error: read no more; requests already read are answered first, then the error."""
        if self.error is None:
            self.error = error

    def continue_due(self) -> bool:
        """A request that expects 100-continue is read while nothing else is pending: send CONTINUE (once)."""
        return self.error is None and self.step() == NEXT_CONTINUE

    # serving -------------------------------------------------------------------------------------
    def step(self) -> int:
        """What is next, once something happened: NEXT_REQUEST (take it, unless output is paused), NEXT_ERROR
        (answer the pending error, see `error_reply`), NEXT_CLOSE, NEXT_CONTINUE (write CONTINUE: counted as
        sent), or NOTHING_NEXT."""
        state = self.state
        if state in (IDLE, RECEIVING):
            parser = self.parser
            if parser.ready:
                return NEXT_REQUEST
            if self.error is not None:
                return NEXT_ERROR
            if parser.continue_wanted:  # a request that expects 100-continue, with nothing before it
                parser.continue_wanted = False
                return NEXT_CONTINUE
        elif state == MUST_CLOSE:
            return NEXT_CLOSE
        return NOTHING_NEXT

    def due(self) -> bool:
        """A request waits and may be taken now (the shell also waits while its output is paused)."""
        return self.state in (IDLE, RECEIVING) and bool(self.parser.ready)

    def take(self, settings: ServerSettings) -> Request:
        """The next request to answer (call only when `due`); `settings` are the listener's current ones."""
        if not self.parser.ready:
            raise IllegalTransition(f"dispatch of no request in state {STATE_NAMES[self.state]}")
        moved = _NEXT[self.state << 4 | DISPATCH]  # (`_go`, inline: taken per request)
        if moved < 0:
            raise self._illegal(DISPATCH)
        self.state = moved
        request = self.parser.ready.popleft()
        self.current = request
        self.settings = settings
        return request

    def serves(self, request: Request) -> bool:
        """`request` is still awaiting its answer (dispatch may have answered it at once)."""
        return self.current is request

    def _keeps(self, request: Request, close_delimited: bool, draining: bool) -> bool:
        """Whether the connection stays open after the answer to `request`: the one keep-alive decision."""
        return request.keep_alive and not draining and not close_delimited

    def answer(self, response: Response, draining: bool, now: float) -> bytes:
        """The answer to the current request: the bytes to write. With a stream, its head only (the state is
        SENDING: the body goes through `stream_data`, then `stream_end`)."""
        request = self.current
        if request is None:
            raise IllegalTransition(f"answer in state {STATE_NAMES[self.state]}")
        settings = self.settings
        stream = response.stream
        if stream is not None and stream.error is not None:
            response, stream = local_reply(stream.error), None  # it failed before its head went out: a status
        request_id = request.request_id if settings.request_id_in_response else b""
        self.last_activity = now
        if stream is None:
            self.current = None
            keep = self._keeps(request, False, draining)
            event = ANSWER if keep else ANSWER_CLOSE
            moved = _NEXT[self.state << 4 | event]  # (`_go`, inline: taken per request)
            if moved < 0:
                raise self._illegal(event)
            self.state = moved
            if keep and (self.eof or self.parser.in_message):
                self._settle()
            return encode_response(response, keep, request.method == b"HEAD", request_id)
        chunked = stream.length < 0 and request.version == b"1.1"
        close_delimited = stream.length < 0 and not chunked  # an HTTP/1.0 caller: the body ends when we close
        keep = self._keeps(request, close_delimited, draining)
        self._chunked = chunked
        self._close_delimited = close_delimited
        self._go(STREAM)
        return encode_stream_head(response, stream.length, chunked, keep, request_id)

    def refuse(self, error: ProxyError, draining: bool, now: float) -> bytes:
        """Answer the current request with a local reply (its guard refused it)."""
        return self.answer(local_reply(error), draining, now)

    def stream_data(self, data: bytes) -> bytes:
        if self.state != SENDING:
            return b""
        return chunk(data) if self._chunked else data

    def stream_end(self, draining: bool, now: float, trailers: Headers | None = None) -> bytes:
        """The streamed body ended: the bytes that end it (the last chunk, with the answer's trailers for a caller
        that said `TE: trailers`)."""
        request = self.current
        if self.state != SENDING or request is None:
            raise IllegalTransition(f"end in state {STATE_NAMES[self.state]}")
        self.current = None
        self.last_activity = now
        self._go(END if self._keeps(request, self._close_delimited, draining) else END_CLOSE)
        self._settle()
        if not self._chunked:
            return b""
        if trailers and any(name == b"te" and b"trailers" in value.lower() for name, value in request.headers):
            return last_chunk(trailers)
        return LAST_CHUNK

    def _settle(self) -> None:
        """An answer is out and the connection stays open: back to reading, or to close once a half-closed client
        has all its answers (a pending error is answered first, see `error_due`)."""
        if self.state != IDLE:
            return
        parser = self.parser
        if self.eof and self.error is None and not parser.ready:
            self._go(FAIL)
        elif parser.in_message:
            self._go(BEGIN)

    def error_due(self) -> bool:
        """The pending protocol error is next to answer (nothing before it is left)."""
        return self.error is not None and self.step() == NEXT_ERROR

    def error_reply(self) -> tuple[Response, bytes]:
        """The answer to the pending error (the connection closes after it)."""
        error = self.error
        assert error is not None
        self._go(FAIL)
        response = local_reply(error)
        return response, encode_response(response, keep_alive=False)

    def must_close(self) -> bool:
        return self.state == MUST_CLOSE

    def closed(self) -> None:
        self._go(CLOSE)
        self.current = None

    # timers --------------------------------------------------------------------------------------
    def expire(self, now: float) -> float:
        """The connection's timer fired: the time of the next look, or EXPIRED_ERROR (`error` is set: a head or
        a body that stopped arriving), or EXPIRED_IDLE (the idle timeout). 0.0: nothing to watch."""
        state = self.state
        if state in (CLOSED, MUST_CLOSE) or self.error is not None:
            return 0.0
        settings = self.settings
        parser = self.parser
        if not parser.headers_done and self.head_started:
            deadline = self.head_started + settings.header_timeout
            if now >= deadline:
                self.fail(RequestTimeout("header_timeout", "request headers not received in time"))
                return EXPIRED_ERROR
            return deadline
        deadline = self.last_activity + settings.idle_timeout
        if parser.in_message and self.current is None:
            if now >= deadline:  # a body that stopped arriving
                self.fail(RequestTimeout("body_timeout", "request body not received in time"))
                return EXPIRED_ERROR
            return deadline
        if self.busy:  # the handler has its own timeouts (a streamed body: the route's, and the send timeout)
            return now + settings.idle_timeout
        if now >= deadline:
            self._go(FAIL)
            return EXPIRED_IDLE
        return deadline


__all__ = ["CLOSED", "CONTINUE", "DISPATCHED", "EXPIRED_ERROR", "EXPIRED_IDLE", "IDLE", "MUST_CLOSE", "NEXT_CLOSE",
           "NEXT_CONTINUE", "NEXT_ERROR", "NEXT_REQUEST", "NOTHING_NEXT", "RECEIVING", "SENDING", "STATE_NAMES",
           "TRANSITIONS", "IllegalTransition", "ServerConnection"]
