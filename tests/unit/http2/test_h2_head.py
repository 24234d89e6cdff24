"""An HTTP/2 head made into a `Request` by the same rules as an HTTP/1.1 one: the path's normal form, the
authority, the singletons, the forwarded-header trust, the limits. Each case beside what HTTP/1.1 does."""

from __future__ import annotations

import pytest

from meshbatch.errors import ProxyError
from meshbatch.http.forwarded import Trust
from meshbatch.http.parser import ParserLimits, RequestParser
from meshbatch.http.paths import PathRules
from meshbatch.http2 import head as head_module
from meshbatch.http2.head import build_request, trailer_fields

Fields = list[tuple[bytes, bytes]]


def head(path: bytes = b"/x", method: bytes = b"GET", authority: bytes | None = b"svc",
         extra: Fields | None = None) -> Fields:
    fields = [(b":method", method), (b":scheme", b"http"), (b":path", path)]
    if authority is not None:
        fields.append((b":authority", authority))
    return fields + (extra or [])


def build(fields: Fields, limits: ParserLimits | None = None) -> tuple[int, str] | tuple[bytes, bytes, Fields, str]:
    try:
        r = build_request(fields, limits or ParserLimits(), "10.0.0.1", b"http", 5.0)
    except ProxyError as error:
        return error.status, error.reason
    return r.target, r.host, r.headers, r.client


def accepted(fields: Fields, limits: ParserLimits | None = None) -> tuple[bytes, bytes, Fields, str]:
    r = build_request(fields, limits or ParserLimits(), "10.0.0.1", b"http", 5.0)
    return r.target, r.host, r.headers, r.client


def http1(target: bytes, method: bytes = b"GET", host: bytes = b"svc", extra: bytes = b"",
          limits: ParserLimits | None = None) -> tuple[int, str] | bytes:
    parser = RequestParser(limits or ParserLimits(), "10.0.0.1")
    try:
        parser.feed(b"%s %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (method, target, host, extra))
    except ProxyError as error:
        return error.status, error.reason
    return parser.ready[0].target


@pytest.mark.parametrize("path", [b"/a/./b/../c", b"//a//b", b"/%61dmin", b"/x?q=/../", b"/a%2fb", b"/a;b",
                                  b"/a\\b", b"/%00", b"/a#frag"])
def test_paths_become_what_http1_makes_of_them(path: bytes) -> None:
    result = build(head(path))
    expected = http1(path)
    assert (result[0] if isinstance(expected, bytes) else result) == expected


def test_path_rules_of_the_listener_apply() -> None:
    limits = ParserLimits(paths=PathRules(escaped_slashes="keep", path_parameters="keep"))
    assert build(head(b"/a%2fb;c"), limits)[0] == b"/a%2Fb;c"


@pytest.mark.parametrize(("fields", "refusal"), [
    (head(b"x"), (400, "invalid_target")),
    (head(b"*"), (400, "invalid_target")),
    (head(b"/", b"CONNECT"), (400, "upgrade_not_supported")),
    (head(authority=None), (400, "missing_host")),
    (head(authority=b"a@b"), (400, "invalid_host")),
    (head(authority=b"svc/../admin"), (400, "invalid_host")),
    (head(extra=[(b"host", b"other")]), (400, "host_mismatch")),
    (head(extra=[(b"authorization", b"a"), (b"authorization", b"b")]), (400, "duplicate_header")),
    (head(extra=[(b"x-meshbatch-priority", b"high"), (b"x-meshbatch-priority", b"low")]), (400, "duplicate_header")),
    (head(authority=None, extra=[(b"host", b"a"), (b"host", b"a")]), (400, "duplicate_host")),
    (head(extra=[(b"expect", b"later")]), (400, "unsupported_expect")),
    ([(b":method", b"GET"), (b":scheme", b"ftp"), (b":path", b"/"), (b":authority", b"a")],
     (400, "unsupported_scheme")),
    (head(extra=[(b"content-length", b"9000000")]), (413, "body_too_large")),
    (head(extra=[(b"x-big", b"v" * 70_000)]), (431, "headers_too_large")),
    (head(extra=[(b"x-n", b"1")] * 101), (431, "too_many_headers")),
])
def test_what_is_refused(fields: Fields, refusal: tuple[int, str]) -> None:
    assert build(fields) == refusal


M = (400, "malformed_h2_request")


@pytest.mark.parametrize("fields", [
    head(extra=[(b"X-Upper", b"1")]),  # RFC 9113 8.2.1: no upper case in a name
    head(extra=[(b"x y", b"1")]),
    head(extra=[(b"x:y", b"1")]),
    head(extra=[(b"", b"1")]),
    head(extra=[(b"x\x00", b"1")]),
    head(extra=[(b"x\xc3\xa9", b"1")]),
    head(extra=[(b"x", b"a\r\nb")]),
    head(extra=[(b"x", b"a\nb")]),
    head(extra=[(b"x", b"a\x00b")]),
    head(extra=[(b"x", b" a")]),
    head(extra=[(b"x", b"a\t")]),
    head(extra=[(b"connection", b"close")]),  # 8.2.2: connection-specific fields
    head(extra=[(b"keep-alive", b"1")]),
    head(extra=[(b"proxy-connection", b"x")]),
    head(extra=[(b"transfer-encoding", b"chunked")]),
    head(extra=[(b"upgrade", b"websocket")]),
    head(extra=[(b"te", b"gzip")]),
    head(extra=[(b"x", b"1"), (b":authority", b"late")]),  # 8.3: pseudo-header fields first, once each, known
    [*head(), (b":path", b"/again")],
    [*head(), (b":status", b"200")],
    [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a"), (b":protocol", b"ws")],
    [(b":method", b"GET"), (b":fake", b"1"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a")],
    [(b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a")],  # the ones a request needs
    [(b":method", b"GET"), (b":path", b"/"), (b":authority", b"a")],
    [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a")],
    head(b""),
])
def test_malformed_blocks_are_refused(fields: Fields) -> None:
    assert build(fields) == M


def test_what_a_well_formed_block_may_carry() -> None:
    _, _, headers, _ = accepted(head(extra=[(b"te", b"trailers"), (b"x", b""), (b"x-sym", b"!#$%&'*+-.^_`|~09az"),
                                            (b"x-v", b"a b\tc\x7f\xff")]))
    assert (b"te", b"trailers") in headers and (b"x", b"") in headers and (b"x-v", b"a b\tc\x7f\xff") in headers


def test_split_cookies_are_joined_again() -> None:
    _, _, headers, _ = accepted(head(extra=[(b"cookie", b"a=1"), (b"x", b"1"), (b"cookie", b"b=2")]))
    assert [value for name, value in headers if name == b"cookie"] == [b"a=1; b=2"]
    assert build(head(extra=[(b"x-n", b"1")] * 100 + [(b"cookie", b"a=1")])) == (431, "too_many_headers")


def test_the_authority_goes_upstream_as_host_without_its_trailing_dot() -> None:
    _, host, headers, _ = accepted(head(authority=b"Svc.:8080", extra=[(b"host", b"svc:8080")]))
    assert host == b"svc" and (b"host", b"Svc:8080") in headers
    assert [name for name, _ in headers].count(b"host") == 1
    assert build(head(b"*", b"OPTIONS"))[0] == b"*"


def test_authorities_seen_before_read_as_the_first_time() -> None:
    """A kept authority gives what a fresh parse gives; one refused is refused again; the table starts over when
    full, and many different authorities never grow it past its bound."""
    head_module._AUTHORITIES.clear()
    for _ in range(2):
        for authority in (b"Svc.:8080", b"svc", b"[::1]:9", b"10.0.0.1"):
            got = build(head(authority=authority))
            head_module._AUTHORITIES.clear()
            assert build(head(authority=authority)) == got
        assert build(head(authority=b"a@b")) == (400, "invalid_host")
        assert b"a@b" not in head_module._AUTHORITIES
    for i in range(head_module.MAX_AUTHORITIES + 20):
        assert build(head(authority=b"svc-%d" % i))[1] == b"svc-%d" % i
        assert len(head_module._AUTHORITIES) <= head_module.MAX_AUTHORITIES


def test_forwarded_headers_by_the_listeners_trust() -> None:
    xff = [(b"x-forwarded-for", b"1.1.1.1, 2.2.2.2"), (b"x-forwarded-proto", b"https"), (b"forwarded", b"for=x"),
           (b"x-request-id", b"abc"), (b"traceparent", b"00-1-2-01")]
    _, _, headers, client = accepted(head(extra=xff))  # not an edge, no trusted hop
    names = [name for name, _ in headers]
    assert client == "10.0.0.1" and b"x-forwarded-proto" not in names and b"forwarded" in names
    _, _, headers, client = accepted(head(extra=xff), ParserLimits(trust=Trust(xff_num_trusted_hops=1)))
    assert client == "2.2.2.2" and b"x-forwarded-proto" in [name for name, _ in headers]
    _, _, headers, client = accepted(head(extra=xff), ParserLimits(trust=Trust(edge=True)))
    assert [name for name, _ in headers] == [b"host"] and client == "10.0.0.1"


def test_trailers() -> None:
    assert trailer_fields([(b"grpc-status", b"0")], ParserLimits()) == [(b"grpc-status", b"0")]
    with pytest.raises(ProxyError):
        trailer_fields([(b":path", b"/")], ParserLimits())
    with pytest.raises(ProxyError):
        trailer_fields([(b"x", b"1")] * 101, ParserLimits())
    for bad in [(b"Grpc-Status", b"0"), (b"connection", b"close"), (b"x", b"a\r\nb"), (b"x", b"a ")]:
        with pytest.raises(ProxyError, match="malformed_h2_request"):
            trailer_fields([bad], ParserLimits())
