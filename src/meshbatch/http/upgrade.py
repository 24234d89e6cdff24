"""An HTTP/1.1 request that asks to switch protocols (RFC 9110 7.8), from where llhttp stops reading it. Pure.

llhttp stops at the end of the head of a request that carries `Connection: upgrade` and an `Upgrade` field: what
follows belongs to the new protocol, the body included. The request reader (http/parser.py) hands the request
and those bytes here, and this decides:

- `Upgrade: h2c` (RFC 7540 3.2) on a listener that allows it (`codec: auto`, plaintext): the connection switches
  to HTTP/2 once the request is next to be answered (`101 Switching Protocols`, then the server's SETTINGS; the
  request becomes stream 1, half-closed, and is answered over HTTP/2). It must carry exactly one
  `HTTP2-Settings` field holding base64url SETTINGS (at most `MAX_SETTINGS` of them, each value in its range)
  and name it in `Connection`; else 400 `bad_http2_settings`.
- `Upgrade: h2c` where the listener does not switch (`codec: http1`, or TLS, where HTTP/2 is chosen by ALPN):
  the upgrade is ignored, as RFC 9110 allows, and the request is served over HTTP/1.1; the connection goes on
  reading HTTP/1.1 after it.
- any other protocol (WebSocket ...): 400 `upgrade_not_supported`, as before.

A body (Content-Length) is read here, within the listener's `max_body_bytes` as any HTTP/1.1 body is, before
the request is served either way (Envoy's choice, rather than nginx's refusal: the body is whole before the
101, so it becomes stream 1's body). A chunked upgrade request is refused (400 `upgrade_not_supported`): its
framing would have to be read outside llhttp. Bytes that arrive after the request and before its switch (only
a client that does not wait for the 101 sends any) are kept for the HTTP/2 connection, up to `max_rest` bytes.
"""

from __future__ import annotations

import binascii
from typing import Final

from meshbatch.errors import BadRequest
from meshbatch.http.message import Headers, Request
from meshbatch.http.serialize import field_tokens

SWITCHING: Final = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
MAX_SETTINGS: Final = 32  # SETTINGS entries in HTTP2-Settings (RFC 9113 defines 7; h2 ignores unknown ones)
_B64URL: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
# RFC 9113 6.5.2: ENABLE_PUSH 0 or 1, INITIAL_WINDOW_SIZE up to 2^31-1, MAX_FRAME_SIZE from 2^14 to 2^24-1.
_RANGES: Final = {0x2: (0, 1), 0x4: (0, 2**31 - 1), 0x5: (2**14, 2**24 - 1)}


def settings_payload(values: list[bytes]) -> bytes:
    """The SETTINGS payload of the HTTP2-Settings fields (exactly one, base64url, well-formed), or a 400."""
    if len(values) != 1:
        raise BadRequest("bad_http2_settings", f"an h2c upgrade needs exactly one HTTP2-Settings field, not "
                                               f"{len(values)}")
    text = values[0].strip(b" \t").rstrip(b"=")
    if len(text) > (MAX_SETTINGS * 6 * 4 + 2) // 3 or not set(text) <= _B64URL:
        raise BadRequest("bad_http2_settings", "HTTP2-Settings is not a base64url SETTINGS payload")
    try:
        payload = binascii.a2b_base64(text.replace(b"-", b"+").replace(b"_", b"/") + b"=" * (-len(text) % 4))
    except binascii.Error:
        raise BadRequest("bad_http2_settings", "HTTP2-Settings is not base64url") from None
    if len(payload) % 6:
        raise BadRequest("bad_http2_settings", "HTTP2-Settings is not a whole number of settings")
    for at in range(0, len(payload), 6):
        code = int.from_bytes(payload[at:at + 2], "big")
        value = int.from_bytes(payload[at + 2:at + 6], "big")
        low, high = _RANGES.get(code, (0, 2**32 - 1))
        if not low <= value <= high:
            raise BadRequest("bad_http2_settings", f"HTTP2-Settings: setting {code:#x} = {value} is out of range")
    return payload


class Upgrade:
    """An upgrade request being read (its body), then waiting to be served. `settings`: the HTTP2-Settings payload
    when the connection switches to h2c; None when the upgrade is ignored (the request is served over HTTP/1.1)."""

    __slots__ = ("_body", "_handed", "expects", "left", "max_rest", "overflow", "request", "rest", "settings")

    def __init__(self, request: Request, settings: bytes | None, length: int, max_rest: int) -> None:
        self.request = request
        self.settings = settings
        self.left = length  # body bytes still to read
        self._body: list[bytes] = []
        self.rest = b""  # the bytes after the request: the new protocol's, or the next HTTP/1.1 request's
        self.max_rest = max_rest
        self.overflow = False  # more than `max_rest` came: the request is served over HTTP/1.1, then a 400
        self._handed = False  # the request went to the reader's queue
        self.expects = False  # it sent `Expect: 100-continue`: the reader sends the 100 before reading its body

    @classmethod
    def of(cls, request: Request | None, fields: Headers | None, h2c: bool, max_rest: int) -> Upgrade:
        """The upgrade `request` asks for (`fields`: its Upgrade and HTTP2-Settings fields, removed from its
        headers); `h2c`: the connection may switch to HTTP/2. Raises the 400 to answer."""
        if request is None or fields is None or b"h2c" not in field_tokens(fields, b"upgrade"):
            raise BadRequest("upgrade_not_supported", "protocol upgrades other than h2c are not proxied")
        if request.header(b"transfer-encoding") is not None:
            raise BadRequest("upgrade_not_supported", "an h2c upgrade request with a chunked body is not served")
        length = request.header(b"content-length")
        settings = None
        if h2c:
            if b"http2-settings" not in field_tokens(request.headers, b"connection"):
                raise BadRequest("bad_http2_settings", "an h2c upgrade must name HTTP2-Settings in Connection")
            settings = settings_payload([value for name, value in fields if name == b"http2-settings"])
        # (an ignored upgrade's rest is read as HTTP/1.1 at once: bounded by the read it came with)
        upgrade = cls(request, settings, int(length) if length is not None else 0, max_rest if h2c else 1 << 62)
        upgrade.expects = (b"expect", b"100-continue") in fields  # (the reader adds it to the fields)
        return upgrade

    def feed(self, data: bytes) -> Request | None:
        """Bytes after the request's head: its body first, then what follows. The request, once, when whole."""
        left = self.left
        if left:
            piece = data[:left]
            self._body.append(piece)
            self.left = left = left - len(piece)
            if left:
                return None
            data = data[len(piece):]
            body, self._body = self._body, []
            self.request.body = body[0] if len(body) == 1 else b"".join(body)
        if data:
            if len(self.rest) + len(data) > self.max_rest:
                self.overflow = True
                raise BadRequest("bad_upgrade", f"more than {self.max_rest} bytes sent after an upgrade request "
                                                "before its answer")
            self.rest += data
        if self._handed:
            return None
        self._handed = True
        return self.request

    def __repr__(self) -> str:
        return f"<Upgrade {'h2c' if self.settings is not None else 'ignored'} left={self.left} rest={len(self.rest)}>"


__all__ = ["MAX_SETTINGS", "SWITCHING", "Upgrade", "settings_payload"]
