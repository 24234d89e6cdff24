"""The downstream HTTP/1.1 request reader: bytes in, complete requests (or one precise error) out. No I/O.

llhttp (through httptools) is strict by default: it rejects Content-Length with Transfer-Encoding, duplicate
Content-Length, bad chunk sizes, obs-fold, bare LF, invalid header characters and unknown transfer codings.
On top of it this reader enforces what a proxy must add so that it and the upstream never disagree about
where a request ends (request smuggling): one Host, Host required on HTTP/1.1, no Transfer-Encoding on
HTTP/1.0, HTTP/1.0 and 1.1 only; and the listener's limits on header bytes and body bytes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import httptools

from meshbatch.errors import BadRequest, HeadersTooLarge, PayloadTooLarge, ProxyError
from meshbatch.http.message import Headers, Request


@dataclass(frozen=True, slots=True)
class ParserLimits:
    max_header_bytes: int = 65_536
    max_body_bytes: int = 8_388_608


class _NoCallbacks:
    """The protocol of a detached parser: httptools calls nothing on it."""


# What a closed connection's RequestParser holds instead of its own httptools parser (see `detach`).
_DETACHED = httptools.HttpRequestParser(_NoCallbacks())


class RequestParser:
    """Feed bytes; collect `Request`s from `ready`. Raises `ProxyError` when the stream must be closed.

    After an error the connection is unusable: the caller answers the error and closes.
    """

    __slots__ = (
        "_body",
        "_body_len",
        "_error",
        "_expect",
        "_head_fed",
        "_header_bytes",
        "_headers",
        "_host",
        "_length",
        "_parser",
        "_request_id",
        "_te",
        "_url",
        "_version",
        "client",
        "continue_wanted",
        "headers_done",
        "in_message",
        "limits",
        "now",
        "ready",
        "scheme",
    )

    def __init__(self, limits: ParserLimits, client: str = "", scheme: bytes = b"http") -> None:
        self.limits = limits
        self.client = client
        self.scheme = scheme
        self.ready: deque[Request] = deque()
        self.in_message = False
        self.headers_done = False
        self.continue_wanted = False
        self._reset()
        self.now = 0.0
        self._parser = httptools.HttpRequestParser(self)
        self._error: ProxyError | None = None
        self._reset()

    def _reset(self) -> None:
        self._url = b""
        self._headers: Headers = []
        self._body: list[bytes] = []
        self._body_len = 0
        self._header_bytes = 0
        self._host: bytes | None = None
        self._te = False
        self._expect = False
        self._request_id = b""
        self._length = 0
        self._version = "1.1"
        self._head_fed = -1

    def detach(self) -> None:
        """The connection is gone: drop httptools' parser (it refers back to this object's callbacks)."""
        self._parser = _DETACHED

    def feed(self, data: bytes, now: float = 0.0) -> None:
        self.now = now
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self.ready:  # llhttp completes the upgrade request before it stops: it is not to be served
                self.ready.pop()
            raise BadRequest("upgrade_not_supported", "protocol upgrades are not proxied") from None
        except httptools.HttpParserCallbackError:
            error = self._error or BadRequest("bad_request")
            raise error from None
        except httptools.HttpParserError as exc:
            if self._error is not None:
                raise self._error from None
            raise BadRequest("malformed_request", _describe(exc)) from None
        if self.in_message and not self.headers_done:
            # httptools buffers a header line until it ends, so a line that never ends is bounded here. When
            # the head was already open before this feed (and no message ended in it), all of `data` is head.
            head_fed = self._head_fed
            if head_fed >= 0:
                self._head_fed = head_fed = head_fed + len(data)
                if head_fed > self.limits.max_header_bytes:
                    self._fail(HeadersTooLarge("headers_too_large", "header line too long"))
            else:
                self._head_fed = 0

    def _fail(self, error: ProxyError) -> None:
        self._error = error
        raise error

    # httptools callbacks -------------------------------------------------------------------------
    def on_url(self, url: bytes) -> None:
        # The first callback of every message (state was reset when the previous one completed).
        self.in_message = True
        self._url += url
        self._header_bytes += len(url)
        if self._header_bytes > self.limits.max_header_bytes:
            self._fail(HeadersTooLarge("headers_too_large", "request line too long"))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self.limits.max_header_bytes:
            self._fail(HeadersTooLarge())
        if self.headers_done:  # a trailer field: never merged into the headers (RFC 9112 7.1.2)
            return
        lname = name.lower()
        if lname == b"host":
            if self._host is not None:
                self._fail(BadRequest("duplicate_host", "more than one Host header"))
            self._host = value
        elif lname == b"transfer-encoding":
            # Only chunked framing is removed here: a body still gzip-coded must not go upstream unlabelled.
            if value.strip(b" \t").lower() != b"chunked":
                self._fail(BadRequest("malformed_request", "Transfer-Encoding other than chunked"))
            self._te = True
        elif lname == b"expect":
            if value.lower() != b"100-continue":
                self._fail(BadRequest("unsupported_expect", "only 'Expect: 100-continue' is supported"))
            self._expect = True
            return
        elif lname == b"x-request-id":
            if not value:  # dropped: the server generates one (an empty one upstream would make two)
                return
            self._request_id = value
        elif lname == b"content-length":
            self._length = int(value)  # llhttp has checked it is one run of digits
        self._headers.append((lname, value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        version = self._version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            self._fail(BadRequest("unsupported_version", f"HTTP/{version} is not supported"))
        if version == "1.1" and self._host is None:
            self._fail(BadRequest("missing_host", "HTTP/1.1 requires a Host header"))
        if self._te and version == "1.0":
            self._fail(BadRequest("te_on_http10", "Transfer-Encoding is not allowed on HTTP/1.0"))
        limit = self.limits.max_body_bytes
        if self._length > limit:
            self._fail(PayloadTooLarge("body_too_large", f"body of {self._length} bytes exceeds {limit}"))
        self.headers_done = True
        self.continue_wanted = self._expect and version == "1.1"

    def on_body(self, body: bytes) -> None:
        self._body_len += len(body)
        if self._body_len > self.limits.max_body_bytes:
            self._fail(PayloadTooLarge("body_too_large", f"body exceeds {self.limits.max_body_bytes} bytes"))
        self._body.append(body)

    def on_message_complete(self) -> None:
        parser = self._parser
        url = self._url
        host = self._host or b""
        if url[:1] != b"/" and url != b"*":
            url, host = self._origin_form(url, host)
        if host[-1:] != b"]" and b":" in host:
            host = host.rpartition(b":")[0]
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self.ready.append(
            Request(
                parser.get_method(),
                url,
                self._headers,
                body,
                host=host.lower(),
                version=b"1.1" if self._version == "1.1" else b"1.0",
                keep_alive=parser.should_keep_alive(),
                client=self.client,
                scheme=self.scheme,
                request_id=self._request_id,
                received_at=self.now,
            )
        )
        self.in_message = False
        self.headers_done = False
        self.continue_wanted = False
        self._reset()

    def _origin_form(self, url: bytes, host: bytes) -> tuple[bytes, bytes]:
        """An absolute-form target (`http://authority/path?q`, as sent to a forward proxy): the origin-form
        target and the authority, which replaces Host (RFC 9112 3.2.2) so routing and the upstream agree."""
        scheme, sep, rest = url.partition(b"://")
        if not sep or scheme.lower() not in (b"http", b"https"):
            return url, host
        end = len(rest)
        for mark in (b"/", b"?"):
            at = rest.find(mark)
            if 0 <= at < end:
                end = at
        authority = rest[:end].rpartition(b"@")[2]
        target = rest[end:]
        if not target.startswith(b"/"):
            target = b"/" + target
        headers = self._headers
        for i, (name, _) in enumerate(headers):
            if name == b"host":
                headers[i] = (b"host", authority)
                break
        else:
            headers.append((b"host", authority))
        return target, authority


def _describe(exc: Exception) -> str:
    text = str(exc)
    return text.split(": ", 1)[-1] if text else "unparseable request"


__all__ = ["ParserLimits", "RequestParser"]
