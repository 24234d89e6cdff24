"""The HTTP/1.1 reader and an upgrade request (http/upgrade.py): h2c switches only where allowed, with one valid
HTTP2-Settings; elsewhere it is ignored and the connection goes on in HTTP/1.1; other upgrades stay refused."""

from __future__ import annotations

import base64

import pytest

from meshbatch.errors import BadRequest, PayloadTooLarge, ProxyError
from meshbatch.http.parser import ParserLimits, RequestParser
from meshbatch.http.upgrade import MAX_SETTINGS, settings_payload

SETTINGS = base64.urlsafe_b64encode(b"\x00\x03\x00\x00\x00\x64\x00\x04\x00\x01\x00\x00").rstrip(b"=")


def upgrade_head(method: bytes = b"GET", settings: list[bytes] | None = None, extra: bytes = b"",
                 connection: bytes = b"Upgrade, HTTP2-Settings", upgrade: bytes = b"h2c") -> bytes:
    fields = b"".join(b"HTTP2-Settings: " + value + b"\r\n" for value in (settings if settings is not None
                                                                          else [SETTINGS]))
    return (method + b" /up HTTP/1.1\r\nHost: a\r\nConnection: " + connection + b"\r\nUpgrade: " + upgrade +
            b"\r\n" + fields + extra + b"\r\n")


def parser(h2c: bool = True, limits: ParserLimits | None = None) -> RequestParser:
    p = RequestParser(limits or ParserLimits())
    p.h2c = h2c
    return p


def failure(data: bytes, h2c: bool = True) -> ProxyError:
    with pytest.raises(ProxyError) as info:
        parser(h2c).feed(data)
    return info.value


def test_h2c_upgrade_waits_with_the_preface_kept() -> None:
    p = parser()
    p.feed(upgrade_head() + b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert [r.target for r in p.ready] == [b"/up"]
    upgrade = p.upgrade
    assert upgrade is not None and upgrade.request is p.ready[0]
    assert upgrade.settings == base64.urlsafe_b64decode(SETTINGS)
    assert upgrade.rest == b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    p.feed(b"more frames")  # until it switches, what follows is the new protocol's
    assert upgrade.rest.endswith(b"more frames") and len(p.ready) == 1
    names = {name for name, _ in p.ready[0].headers}
    assert b"upgrade" not in names and b"http2-settings" not in names  # hop-by-hop: never forwarded


def test_h2c_upgrade_with_a_body_reads_it_first_in_pieces() -> None:
    p = parser()
    p.feed(upgrade_head(b"POST", extra=b"Content-Length: 10\r\n") + b"hello")
    assert not p.ready and p.in_message  # the body is still arriving (the body timeout runs)
    p.feed(b"worldPRI")
    assert [r.body for r in p.ready] == [b"helloworld"] and not p.in_message
    assert p.upgrade is not None and p.upgrade.rest == b"PRI"


def test_ignored_upgrade_goes_on_in_http1() -> None:
    p = parser(h2c=False)  # codec http1, or TLS
    p.feed(upgrade_head(b"POST", settings=[], extra=b"Content-Length: 2\r\n") + b"okGET /next HTTP/1.1\r\nHost: a"
           b"\r\n\r\n")
    assert [(r.target, r.body) for r in p.ready] == [(b"/up", b"ok"), (b"/next", b"")]
    assert p.upgrade is None
    p.feed(b"GET /third HTTP/1.1\r\nHost: a\r\n\r\n")
    assert [r.target for r in p.ready][-1] == b"/third"


def test_ignored_upgrade_in_pieces() -> None:
    p = parser(h2c=False)
    p.feed(upgrade_head(extra=b"Content-Length: 3\r\n") + b"a")
    p.feed(b"bc")
    p.feed(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
    assert [(r.target, r.body) for r in p.ready] == [(b"/up", b"abc"), (b"/next", b"")]


@pytest.mark.parametrize(("data", "reason"), [
    (upgrade_head(settings=[]), "bad_http2_settings"),
    (upgrade_head(settings=[SETTINGS, SETTINGS]), "bad_http2_settings"),
    (upgrade_head(settings=[b"!!!not-base64!!!"]), "bad_http2_settings"),
    (upgrade_head(settings=[b"AAMAAABk" + b"A"]), "bad_http2_settings"),  # not a whole number of settings
    (upgrade_head(settings=[b"AAMAAABkAA"]), "bad_http2_settings"),
    (upgrade_head(settings=[b"A" * 4096]), "bad_http2_settings"),  # oversized
    (upgrade_head(settings=[base64.urlsafe_b64encode(b"\x00\x02\x00\x00\x00\x02")]), "bad_http2_settings"),
    (upgrade_head(settings=[base64.urlsafe_b64encode(b"\x00\x04\xff\xff\xff\xff")]), "bad_http2_settings"),
    (upgrade_head(settings=[base64.urlsafe_b64encode(b"\x00\x05\x00\x00\x00\x01")]), "bad_http2_settings"),
    (upgrade_head(connection=b"Upgrade"), "bad_http2_settings"),  # HTTP2-Settings not named in Connection
    (upgrade_head(upgrade=b"websocket"), "upgrade_not_supported"),
    (upgrade_head(b"POST", extra=b"Transfer-Encoding: chunked\r\n") + b"0\r\n\r\n", "upgrade_not_supported"),
])
def test_bad_upgrades_are_400(data: bytes, reason: str) -> None:
    error = failure(data)
    assert (type(error), error.status, error.reason) == (BadRequest, 400, reason)


def test_upgrade_body_over_the_limit_is_413() -> None:
    p = parser(limits=ParserLimits(max_body_bytes=10))
    with pytest.raises(PayloadTooLarge):
        p.feed(upgrade_head(b"POST", extra=b"Content-Length: 11\r\n"))


def test_bytes_after_an_upgrade_are_bounded() -> None:
    p = parser(limits=ParserLimits(max_header_bytes=1024))
    p.feed(upgrade_head())
    upgrade = p.upgrade
    assert upgrade is not None
    with pytest.raises(BadRequest) as info:
        for _ in range(10):
            p.feed(b"x" * 200)
    assert info.value.reason == "bad_upgrade" and upgrade.overflow and len(upgrade.rest) <= 1024


def test_upgrade_after_pipelined_requests_keeps_them_first() -> None:
    p = parser()
    p.feed(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n" + upgrade_head())
    assert [r.target for r in p.ready] == [b"/first", b"/up"]


def test_settings_payload_bounds() -> None:
    assert settings_payload([b""]) == b""  # no setting: allowed (the defaults)
    entry = base64.urlsafe_b64encode(b"\x00\x03\x00\x00\x00\x64" * MAX_SETTINGS)
    assert len(settings_payload([entry])) == 6 * MAX_SETTINGS
    with pytest.raises(BadRequest):
        settings_payload([base64.urlsafe_b64encode(b"\x00\x03\x00\x00\x00\x64" * (MAX_SETTINGS + 1))])
    assert settings_payload([SETTINGS + b"="]) == base64.urlsafe_b64decode(SETTINGS)  # padded: accepted too


def test_an_upgrade_expecting_100_continue_gets_it_before_its_body() -> None:
    p = parser()
    p.feed(upgrade_head(b"POST", extra=b"Content-Length: 3\r\nExpect: 100-continue\r\n"))
    assert p.continue_wanted and not p.ready
    p.feed(b"abc")
    assert [r.body for r in p.ready] == [b"abc"]
    q = parser()
    q.feed(upgrade_head(b"GET", extra=b"Expect: 100-continue\r\n"))  # no body: nothing to continue
    assert not q.continue_wanted and len(q.ready) == 1


def test_a_continue_not_yet_sent_is_forgotten_once_the_body_is_whole() -> None:
    p = parser(h2c=False)
    p.feed(upgrade_head(b"POST", settings=[], extra=b"Content-Length: 3\r\nExpect: 100-continue\r\n") + b"abc")
    assert not p.continue_wanted and [r.body for r in p.ready] == [b"abc"]
