"""The downstream HTTP/1.1 request reader: bytes in, complete requests (or one precise error) out. No I/O.

llhttp (through httptools) is strict by default: it rejects Content-Length with Transfer-Encoding, duplicate
Content-Length, bad chunk sizes, obs-fold, bare LF, invalid header characters and unknown transfer codings.
On top of it this reader enforces what a proxy must add so that it and the upstream never disagree about
where a request ends (request smuggling): one Host, Host required on HTTP/1.1, no Transfer-Encoding on
HTTP/1.0, HTTP/1.0 and 1.1 only; and the listener's limits on header bytes, header fields and body bytes.

It also makes each request one unambiguous request, once, before anything reads it, so that routing,
authorization policies and the upstream all see the same thing: the target checked and its path normalised
(http/target.py, http/paths.py), the authority checked, headers the proxy acts on present at most once and
Connection nominations applied (http/fields.py), forwarding headers trusted or dropped by the listener's rules
and the client address derived from them (http/forwarded.py).

When one read holds a request's whole head, its header section is read at once (http/request_head.py: once per
distinct section) instead of through httptools' callback per field, and a second httptools parser without that
callback reads the request: llhttp still checks every byte. Anything unusual (a field refused, a limit crossed,
chunked framing, Expect, an upgrade, a head llhttp refuses) is read again from its first byte the usual way, so
that what is refused, and why, never depends on which way a request was read.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Final

import httptools

from meshbatch.errors import BadRequest, HeadersTooLarge, PayloadTooLarge, ProxyError
from meshbatch.http.fields import OWN_PREFIX
from meshbatch.http.forwarded import client_address
from meshbatch.http.limits import ParserLimits
from meshbatch.http.message import Request
from meshbatch.http.names import NameMemo
from meshbatch.http.paths import normalize_path
from meshbatch.http.request_fields import FieldReader
from meshbatch.http.request_head import MAX_SECTION_BYTES, WATCHED, RequestHead, known_section, request_head, still_kept
from meshbatch.http.request_line import line_version, path_work
from meshbatch.http.serialize import connection_tokens
from meshbatch.http.target import parse_authority, split_absolute
from meshbatch.http.upgrade import Upgrade

# Fields `on_header` looks at (http/request_fields.py `_watched`; anything else is appended after one set lookup).
# Final: the compiled module keeps these in C statics, not in its globals dict (a lookup per header otherwise).
_WATCHED: Final = WATCHED
_OWN_PREFIX: Final = OWN_PREFIX
_MISSES: Final = 4  # heads in a row neither kept nor seen just before ...
_SKIP: Final = 32  # ... and the reads at a request's start that then go the usual way at once


class _NoCallbacks:
    """The protocol of a detached parser: httptools calls nothing on it."""


class _Quick:
    """The protocol of the parser that reads a request whose header section was read at once: the reader's
    callbacks but `on_header` (httptools calls only what its protocol has)."""

    __slots__ = ("on_body", "on_headers_complete", "on_message_complete", "on_url")

    def __init__(self, reader: RequestParser) -> None:
        self.on_url: Callable[[bytes], None] = reader.on_url
        self.on_headers_complete: Callable[[], None] = reader.on_headers_complete
        self.on_body: Callable[[bytes], None] = reader.on_body
        self.on_message_complete: Callable[[], None] = reader.on_message_complete


# What a closed connection's RequestParser holds instead of its own httptools parser (see `detach`).
_DETACHED = httptools.HttpRequestParser(_NoCallbacks())


class RequestParser(FieldReader):
    """Feed bytes; collect `Request`s from `ready`. Raises `ProxyError` when the stream must be closed.

    After an error the connection is unusable: the caller answers the error and closes.
    """

    __slots__ = ("_authority", "_body", "_body_len", "_client", "_error", "_full", "_head_fed", "_host_name",
                 "_host_raw", "_host_value", "_left", "_line", "_misses", "_names", "_parser", "_quick", "_seen_head",
                 "_seen_section", "_skip", "_sticky", "_target", "_url", "_version", "client", "continue_wanted", "h2c",
                 "headers_done", "in_message", "now", "ready", "scheme", "upgrade")

    def __init__(self, limits: ParserLimits, client: str = "", scheme: bytes = b"http") -> None:
        self.client = client  # the TCP peer
        super().__init__(limits)
        self.scheme = scheme
        self.ready: deque[Request] = deque()
        self.in_message = False
        self.headers_done = False
        self.continue_wanted = False
        self.now = 0.0
        self._parser = self._full = httptools.HttpRequestParser(self)  # (`_parser`: the one reading now)
        self._quick = httptools.HttpRequestParser(_Quick(self))
        self._left = 0  # bytes of a body the quick parser still reads
        self._sticky = False  # a request not kept alive was read: its parser reads the rest (llhttp refuses it)
        self._seen_section = b""  # the last header section read whole here, and its head (None: not read at once)
        self._seen_head: RequestHead | None = None
        self._misses = 0
        self._skip = 0
        self._line = b""
        self._names = NameMemo()
        self._error: ProxyError | None = None
        # The last Host checked, its routing name and the value to forward when it differs: a connection mostly
        # repeats one Host, so it is parsed once.
        self._host_raw: bytes | None = None
        self._host_name = b""
        self._host_value: bytes | None = None
        self.h2c = False  # an `Upgrade: h2c` request switches the connection to HTTP/2 (else it is ignored)
        self.upgrade: Upgrade | None = None  # the upgrade request being read or waiting (http/upgrade.py)
        self._reset()

    def _reset(self) -> None:
        self._url = b""
        self._clear_fields()
        self._body: list[bytes] = []
        self._body_len = 0
        self._version = "1.1"
        self._head_fed = -1
        self._target = b""
        self._authority = b""
        self._client = self.client

    def detach(self) -> None:
        """The connection is gone: drop httptools' parser (it refers back to this object's callbacks)."""
        self._parser = self._full = self._quick = _DETACHED

    def feed(self, data: bytes, now: float = 0.0) -> None:
        self.now = now
        if self.upgrade is None and (self._left or not (self.in_message or self._sticky)):
            data = self._feed_quick(data)
            if not data:
                return
        self._line = b"" if self.in_message else data  # (where a request line may begin: http/request_line.py)
        if self.upgrade is not None:
            self._feed_upgrade(data)
            return
        self._execute(data)
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

    def _feed_quick(self, data: bytes) -> bytes:
        """Requests whose head `data` holds whole, read by the quick parser; what is left for the usual way."""
        left = self._left
        if left:  # the body of a request the quick parser began
            if len(data) <= left:
                self._left = left - len(data)
                self._execute(data)
                return b""
            self._left = 0
            self._execute(data[:left])
            data = data[left:]
        while data and not self._sticky:  # (not kept alive: the parser that read it reads the rest)
            self._parser = self._full
            if self._skip:
                self._skip -= 1
                break
            end = data.find(b"\r\n\r\n")
            if end < 0 or data[0] == 13 or data[0] == 10 or end + 4 > self.limits.max_header_bytes:
                break  # (CR, LF: llhttp skips them before a request line)
            line = 0
            while data[line] != 13:  # (the request line's CR, found natively: a `find` call costs more)
                line += 1
            if end - line > MAX_SECTION_BYTES:
                break  # (a long head: never kept, read the usual way)
            section = data[line + 2:end] if line < end else b""
            head = self._seen_head if section == self._seen_section else None
            if head is not None:
                still_kept(section, head)  # (for its lines upstream: http/serialize.py)
            else:  # kept for another connection, else read once it comes twice in a row here
                head = known_section(section)
                if head is None and section == self._seen_section:
                    head = request_head(section)
                self._seen_section = section
                self._seen_head = head
                if head is None:
                    self._misses += 1
                    if self._misses >= _MISSES:  # heads that keep changing: the usual way for a while
                        self._misses = 0
                        self._skip = _SKIP
                    break
            self._misses = 0
            if not self._take(head):
                self._reset()
                break
            total = end + 4 + self._length
            quick = self._parser = self._quick
            self._line = data
            ready = len(self.ready)
            try:
                quick.feed_data(data if total >= len(data) else data[:total])
            except (httptools.HttpParserError, httptools.HttpParserUpgrade):
                self._error = None  # read again the usual way, which refuses it as it always did
                while len(self.ready) > ready:  # (llhttp stops after a CONNECT request it completed)
                    self.ready.pop()
                self._reset()
                self.in_message = self.headers_done = self.continue_wanted = self._sticky = False
                self._quick = httptools.HttpRequestParser(_Quick(self))  # (a parser that failed stays failed)
                self._parser = self._full
                break
            if total > len(data):
                self._left = total - len(data)
                return b""
            data = data[total:]
        return data

    def _execute(self, data: bytes) -> None:
        """`data` to the parser reading now; what it refuses raised as the ProxyError to answer."""
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:  # llhttp completed the request, then stopped: not served yet
            request, fields, self._upgrade = self.ready.pop() if self.ready else None, self._upgrade, None
            self.upgrade = Upgrade.of(request, fields, self.h2c, self.limits.max_header_bytes)  # (or a 400)
            self.in_message = self.headers_done = True  # while its body is read
            self.continue_wanted = self.upgrade.left > 0 and self.upgrade.expects
            self._feed_upgrade(data[exc.args[0]:])
            return
        except httptools.HttpParserCallbackError:
            error = self._error or BadRequest("bad_request")
            raise error from None
        except httptools.HttpParserError as exc:
            if self._error is not None:
                raise self._error from None
            raise BadRequest("malformed_request", _describe(exc)) from None

    def _fail(self, error: ProxyError) -> None:
        self._error = error
        raise error

    def _feed_upgrade(self, data: bytes) -> None:
        """The upgrade request's body, then what follows it (http/upgrade.py)."""
        upgrade = self.upgrade
        assert upgrade is not None
        request = upgrade.feed(data)
        if request is not None:  # whole: it waits to be served
            self.in_message = self.headers_done = self.continue_wanted = False
            self.ready.append(request)
            if upgrade.settings is None:  # ignored: the connection goes on in HTTP/1.1, with a parser past it
                self.upgrade = None
                self._parser = self._full = httptools.HttpRequestParser(self)
                self.feed(upgrade.rest, self.now)

    # httptools callbacks -------------------------------------------------------------------------
    def on_url(self, url: bytes) -> None:
        # The first callback of every message (state was reset when the previous one completed).
        self.in_message = True
        self._url += url
        self._header_bytes += len(url)
        if self._header_bytes > self.limits.max_header_bytes:
            self._fail(HeadersTooLarge("headers_too_large", "request line too long"))

    def on_header(self, name: bytes, value: bytes) -> None:
        limits = self.limits
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > limits.max_header_bytes:
            self._fail(HeadersTooLarge())
        self._fields += 1
        if self._fields > limits.max_headers:
            part = "trailer" if self.headers_done else "header"
            self._fail(HeadersTooLarge("too_many_headers", f"more than {limits.max_headers} {part} fields"))
        if self.headers_done:  # a trailer field: never merged into the headers (RFC 9112 7.1.2)
            return
        lname = self._names.lower(self._fields - 1, name)  # (as the previous request's field there: http/names.py)
        if (lname in _WATCHED or (len(lname) > 12 and lname[0] == 120 and lname.startswith(_OWN_PREFIX))) and \
                not self._watched(lname, value):  # (120: 'x')
            return
        self._headers.append((lname, value))

    def on_headers_complete(self) -> None:
        if self._pending is not None:
            self._fail(self._pending)
        parser = self._parser
        version = line_version(self._line, len(self._url)) or parser.get_http_version()
        self._version = version
        self._line = b""  # (a request after this one in the same read began elsewhere)
        if version not in ("1.1", "1.0"):
            self._fail(BadRequest("unsupported_version", f"HTTP/{version} is not supported"))
        if version == "1.1" and self._host is None:
            self._fail(BadRequest("missing_host", "HTTP/1.1 requires a Host header"))
        if self._te and version == "1.0":
            self._fail(BadRequest("te_on_http10", "Transfer-Encoding is not allowed on HTTP/1.0"))
        limit = self.limits.max_body_bytes
        if self._length > limit:
            self._fail(PayloadTooLarge("body_too_large", f"body of {self._length} bytes exceeds {limit}"))
        try:
            self._settle_head()
        except ProxyError as error:
            self._fail(error)
        self.headers_done = True
        self._fields = 0  # from here on, trailer fields
        self.continue_wanted = self._expect and version == "1.1"

    def _settle_head(self) -> None:
        """Target, authority, path, nominations and client address: decided once, before the body is read."""
        url = self._url
        if 35 in url:  # '#', a byte found natively (`b"#" in url` first tries b"#" as an int: a TypeError formatted)
            raise BadRequest("fragment_in_target", "a request target has no fragment (#)")
        host = self._host
        if url and url[0] == 47:  # '/': origin-form, the common case
            target = url
        elif self._parser.get_method() == b"CONNECT":  # (llhttp would stop at its end; this names why first)
            raise BadRequest("upgrade_not_supported", "CONNECT (tunnelling) is not proxied")
        elif url == b"*":
            if self._parser.get_method() != b"OPTIONS":
                raise BadRequest("invalid_target", "the target '*' is for OPTIONS only")
            target = url
        else:
            scheme, raw, target = split_absolute(url)
            authority = parse_authority(raw)
            if host is not None and not parse_authority(host).same_as(authority, scheme):
                raise BadRequest("host_mismatch", "the Host header and the URL name different hosts")
            self._set_host(authority.value)
            host = authority.value
        if host is not None:
            if host != self._host_raw:
                authority = parse_authority(host)
                self._host_raw = host
                self._host_name = authority.name
                self._host_value = authority.value if authority.dotted else None
            if self._host_value is not None:  # forwarded the way it is routed: without the trailing dot
                self._set_host(self._host_value)
            self._authority = self._host_name
        if target != b"*":
            end = path_work(target)  # (-1: nothing to normalise)
            if end >= 0:
                target = normalize_path(target[:end], self.limits.paths) + target[end:]
        self._target = target
        connection = self._connection
        if connection is not None:
            named = connection_tokens([(b"connection", value) for value in connection])
            if named:
                self._headers = [item for item in self._headers if item[0] not in named]
        xff = self._xff
        if xff is not None:
            self._client = client_address(xff, self._hops, self.client)

    def _set_host(self, value: bytes) -> None:
        """The Host header the upstream gets (the authority of an absolute-form target, or without its dot)."""
        headers = self._headers
        for i, (name, _) in enumerate(headers):
            if name == b"host":
                headers[i] = (b"host", value)
                return
        headers.append((b"host", value))

    def on_body(self, body: bytes) -> None:
        self._body_len += len(body)
        if self._body_len > self.limits.max_body_bytes:
            self._fail(PayloadTooLarge("body_too_large", f"body exceeds {self.limits.max_body_bytes} bytes"))
        self._body.append(body)

    def on_message_complete(self) -> None:
        parser = self._parser
        upgrade = self._upgrade
        if upgrade is not None and self._expect:
            upgrade.append((b"expect", b"100-continue"))  # (its body is read past llhttp: the 100 is sent then)
        parts = self._body
        body = parts[0] if len(parts) == 1 else b"".join(parts) if parts else b""
        keep_alive = parser.should_keep_alive()
        if not keep_alive:
            self._sticky = True
        self.ready.append(
            Request(
                parser.get_method(),
                self._target,
                self._headers,
                body,
                host=self._authority,
                version=b"1.1" if self._version == "1.1" else b"1.0",
                keep_alive=keep_alive,
                client=self._client,
                peer=self.client,
                scheme=self.scheme,
                request_id=self._request_id,
                received_at=self.now,
            )
        )
        self.in_message = False
        self.headers_done = False
        self.continue_wanted = False
        self._reset()
        if upgrade is not None and parser.should_upgrade():
            self._upgrade = upgrade  # for the upgrade: llhttp stops right after this request


def _describe(exc: Exception) -> str:
    text = str(exc)
    return text.split(": ", 1)[-1] if text else "unparseable request"


__all__ = ["ParserLimits", "RequestParser"]
