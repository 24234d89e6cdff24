"""The fields of the request being read, as the HTTP/1.1 request reader (http/parser.py, a `FieldReader`) keeps
them: each checked and noted as it comes (`_watched`: the fields the proxy acts on, present at most once, the
forwarding and tracing fields trusted or dropped by the listener's rules), or a whole header section read at
once taken in the same way (`_take`, http/request_head.py). No I/O.
"""

from __future__ import annotations

from typing import Final, cast

from meshbatch.errors import BadRequest, ProxyError
from meshbatch.http.fields import OWN_PREFIX, PLAIN_CONNECTION, SINGLETONS
from meshbatch.http.limits import ParserLimits
from meshbatch.http.message import Headers
from meshbatch.http.request_head import FORWARDED, RequestHead

# Final: the compiled module keeps these in C statics, not in its globals dict (a lookup per header otherwise).
_SINGLETONS: Final = SINGLETONS
_FORWARDED: Final = FORWARDED
_OWN_PREFIX: Final = OWN_PREFIX
_PLAIN_CONNECTION: Final = PLAIN_CONNECTION


class FieldReader:
    """The state of a request's fields while it is read (emptied for each request by `_clear_fields`)."""

    __slots__ = ("_connection", "_drop_request_id", "_drop_trace", "_expect", "_fields", "_header_bytes", "_headers",
                 "_hops", "_host", "_length", "_pending", "_replace_forwarded", "_request_id", "_seen", "_te",
                 "_upgrade", "_xff", "limits")

    def __init__(self, limits: ParserLimits) -> None:
        self.limits = limits
        trust = limits.trust  # (read per header: kept as plain attributes)
        self._hops = trust.xff_num_trusted_hops
        self._replace_forwarded = trust.replace_forwarded
        self._drop_request_id = trust.drop_request_id
        self._drop_trace = trust.drop_trace
        self._clear_fields()

    def _clear_fields(self) -> None:
        self._headers: Headers = []
        self._header_bytes = 0
        self._fields = 0
        self._seen: list[bytes] | None = None
        self._pending: ProxyError | None = None
        self._host: bytes | None = None
        self._te = False
        self._expect = False
        self._request_id = b""
        self._length = 0
        self._connection: list[bytes] | None = None  # (allocated by the rare request that needs them)
        self._xff: list[bytes] | None = None
        self._upgrade: Headers | None = None  # the Upgrade and HTTP2-Settings fields (hop-by-hop: not forwarded)

    def _refuse(self, error: ProxyError) -> bool:
        """A field the request is refused for, at the end of its head: httptools hands a field on when the next
        one starts, so raising here would let how the bytes were split decide between this error and one llhttp
        finds later in the same head."""
        if self._pending is None:
            self._pending = error
        return False

    def _watched(self, lname: bytes, value: bytes) -> bool:
        """Checks and notes a field the proxy acts on; False drops it."""
        if lname in _SINGLETONS or lname.startswith(_OWN_PREFIX):
            seen = self._seen
            if seen is None:
                self._seen = [lname]
            elif lname in seen:
                return self._refuse(BadRequest("duplicate_header", f"more than one {lname.decode('latin-1')} header"))
            else:
                seen.append(lname)
        if lname == b"host":
            if self._host is not None:
                return self._refuse(BadRequest("duplicate_host", "more than one Host header"))
            self._host = value
        elif lname == b"transfer-encoding":
            # Only chunked framing is removed here: a body still gzip-coded must not go upstream unlabelled.
            if value.strip(b" \t").lower() != b"chunked":
                return self._refuse(BadRequest("malformed_request", "Transfer-Encoding other than chunked"))
            self._te = True
        elif lname == b"expect":
            if value.lower() != b"100-continue":
                return self._refuse(BadRequest("unsupported_expect", "only 'Expect: 100-continue' is supported"))
            self._expect = True
            return False
        elif lname == b"x-request-id":
            # Dropped when empty (the server generates one: an empty one upstream would make two), and on an
            # edge listener (a client's id is not trusted there).
            if not value or self._drop_request_id:
                return False
            self._request_id = value
        elif lname == b"content-length":
            self._length = int(value)  # llhttp has checked it is one run of digits
        elif lname == b"connection":
            if value not in _PLAIN_CONNECTION:
                if self._connection is None:
                    self._connection = []
                self._connection.append(value)
        elif lname == b"x-forwarded-for":
            if self._replace_forwarded:
                return False
            if self._hops:
                if self._xff is None:
                    self._xff = []
                self._xff.append(value)
        elif lname in _FORWARDED:
            return not self._replace_forwarded
        elif lname == b"x-forwarded-proto":
            return self._hops > 0  # else the connection's scheme is sent (upstream/headers.py)
        elif lname == b"traceparent" or lname == b"tracestate":
            return not self._drop_trace
        elif lname == b"upgrade" or lname == b"http2-settings":
            if self._upgrade is None:
                self._upgrade = []
            self._upgrade.append((lname, value))
            return False
        return True

    def _take(self, head: RequestHead) -> bool:
        """The state `on_header` would leave after the fields of `head` (those it drops left out); False: they are
        read the usual way (a field refused, a limit crossed, a body not framed by Content-Length, Expect, an
        upgrade)."""
        limits = self.limits
        fields = head.fields
        if len(fields) > limits.max_headers or head.size > limits.max_header_bytes:
            return False
        dropped: list[int] | None = None
        for i in head.watched:
            field = fields[i]
            if not self._watched(field[0], field[1]):
                if dropped is None:
                    dropped = [i]
                else:
                    dropped.append(i)
        if self._pending is not None or self._te or self._expect or self._upgrade is not None:
            return False
        if dropped is None:
            self._headers = list(fields)
        else:  # (as objects: the compiled build would box each field again, a new tuple)
            rows = cast("tuple[object, ...]", fields)
            self._headers = cast(Headers, [rows[i] for i in range(len(rows)) if i not in dropped])
        self._header_bytes = head.size
        self._fields = len(fields)
        return True


__all__ = ["FieldReader"]
