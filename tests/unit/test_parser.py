"""The downstream request reader: bytes in, `Request`s or one precise `ProxyError` out (no I/O)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshbatch.errors import BadRequest, HeadersTooLarge, PayloadTooLarge, ProxyError
from meshbatch.http.message import Request
from meshbatch.http.parser import ParserLimits, RequestParser


def parse(data: bytes, limits: ParserLimits | None = None, client: str = "10.0.0.1") -> list[Request]:
    parser = RequestParser(limits or ParserLimits(), client)
    parser.feed(data, now=12.5)
    return list(parser.ready)


def parse_one(data: bytes, limits: ParserLimits | None = None) -> Request:
    requests = parse(data, limits)
    assert len(requests) == 1, requests
    return requests[0]


def failure(data: bytes, limits: ParserLimits | None = None) -> ProxyError:
    parser = RequestParser(limits or ParserLimits())
    with pytest.raises(ProxyError) as info:
        parser.feed(data)
    return info.value


# well-formed requests ------------------------------------------------------------------------------
def test_simple_get() -> None:
    req = parse_one(b"GET /orders/7?x=1&y=2 HTTP/1.1\r\nHost: Service.Example:8080\r\nAccept: */*\r\n\r\n")
    assert req.method == b"GET"
    assert req.target == b"/orders/7?x=1&y=2"
    assert req.path == b"/orders/7"
    assert req.query == b"x=1&y=2"
    assert req.host == b"service.example"  # lower case, port dropped
    assert req.version == b"1.1"
    assert req.keep_alive is True
    assert req.body == b""
    assert req.client == "10.0.0.1"
    assert req.received_at == 12.5
    assert req.headers == [(b"host", b"Service.Example:8080"), (b"accept", b"*/*")]
    assert req.header(b"accept") == b"*/*"
    assert req.header(b"missing") is None


def test_header_names_are_lower_case_and_values_raw() -> None:
    req = parse_one(b"GET / HTTP/1.1\r\nHOST: a\r\nX-Mixed-Case: Va Lue\r\n\r\n")
    assert req.headers == [(b"host", b"a"), (b"x-mixed-case", b"Va Lue")]


def test_ipv6_host_keeps_brackets_and_drops_port() -> None:
    assert parse_one(b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n").host == b"[::1]"
    assert parse_one(b"GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n").host == b"[::1]"


def test_content_length_body() -> None:
    req = parse_one(b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
    assert req.body == b"hello"


def test_chunked_body_with_extensions() -> None:
    req = parse_one(
        b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    assert req.body == b"hello world"


def test_chunked_trailers_are_not_merged_into_headers() -> None:
    # RFC 9112 7.1.2: a trailer must not become a header (it would change routing and what the upstream sees).
    req = parse_one(
        b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\nX-Tenant: gold\r\nHost: evil\r\n\r\n"
    )
    assert req.body == b"abc"
    assert req.header(b"x-tenant") is None
    assert req.host == b"a"


def test_http10_closes_by_default_and_keeps_alive_when_asked() -> None:
    req = parse_one(b"GET / HTTP/1.0\r\n\r\n")
    assert (req.version, req.keep_alive, req.host) == (b"1.0", False, b"")
    req = parse_one(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert req.keep_alive is True


def test_connection_close_on_http11() -> None:
    assert parse_one(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").keep_alive is False


def test_request_id_is_taken_from_the_header() -> None:
    req = parse_one(b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: abc-123\r\n\r\n")
    assert req.request_id == b"abc-123"
    assert parse_one(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").request_id == b""


def test_empty_request_id_is_dropped() -> None:
    # The server generates one; forwarding the empty header too would send the upstream two.
    req = parse_one(b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: \r\n\r\n")
    assert req.request_id == b""
    assert req.header(b"x-request-id") is None


def test_empty_host_is_allowed() -> None:
    # RFC 9112 3.2: a client sends an empty Host when the target URI has no authority.
    assert parse_one(b"GET / HTTP/1.1\r\nHost: \r\n\r\n").host == b""


@pytest.mark.parametrize(
    ("target", "host", "origin", "authority"),
    [
        (b"http://svc.example/orders/1?x=1", b"svc.example", b"/orders/1?x=1", b"svc.example"),
        (b"http://svc.example:8080/a", b"svc.example:8080", b"/a", b"svc.example"),
        (b"HTTP://Svc.Example/a", b"svc.example", b"/a", b"svc.example"),
        (b"http://svc.example", b"svc.example:80", b"/", b"svc.example"),
        (b"http://svc.example?q=1", b"svc.example", b"/?q=1", b"svc.example"),
        (b"https://[::1]:8443/p", b"[::1]:8443", b"/p", b"[::1]"),
    ],
)
def test_absolute_form_target(target: bytes, host: bytes, origin: bytes, authority: bytes) -> None:
    # RFC 9112 3.2.2: the target's authority is what the request is routed by and what the upstream is told.
    req = parse_one(b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    assert req.target == origin
    assert req.path == origin.partition(b"?")[0]
    assert req.host == authority
    assert [v for k, v in req.headers if k == b"host"] == [target.split(b"://")[1].split(b"/")[0].split(b"?")[0]]


@pytest.mark.parametrize(("target", "host", "reason"), [
    (b"http://svc.example/a", b"other", "host_mismatch"),  # which one would the upstream believe?
    (b"https://[::1]:8443/p", b"[::1]", "host_mismatch"),  # another port
    (b"http://user:pw@svc.example/a", b"svc.example", "invalid_host"),  # userinfo
    (b"ftp://svc.example/a", b"svc.example", "unsupported_scheme"),
    (b"http:///a", b"svc.example", "invalid_host"),
    (b"svc.example:80", b"svc.example", "malformed_request"),  # authority-form is CONNECT's (llhttp refuses it)
])
def test_absolute_form_target_refused(target: bytes, host: bytes, reason: str) -> None:
    error = failure(b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    assert (error.status, error.reason) == (400, reason)


def test_absolute_form_on_http10_without_host_gets_one() -> None:
    req = parse_one(b"GET http://svc/a HTTP/1.0\r\n\r\n")
    assert (req.target, req.host, req.header(b"host")) == (b"/a", b"svc", b"svc")


def test_asterisk_form_is_kept() -> None:
    req = parse_one(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (req.target, req.host) == (b"*", b"a")


def test_pipelined_requests_come_out_in_order() -> None:
    data = (
        b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
        b"POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n"
        b"GET /4 HTTP/1.1\r\nHost: b\r\n\r\n"
    )
    requests = parse(data)
    assert [(r.target, r.body, r.host) for r in requests] == [
        (b"/1", b"", b"a"), (b"/2", b"abc", b"a"), (b"/3", b"xy", b"a"), (b"/4", b"", b"b")
    ]


def test_byte_at_a_time() -> None:
    data = b"POST /x?q HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nContent-Length: 4\r\n\r\nbody"
    parser = RequestParser(ParserLimits())
    for i in range(len(data)):
        assert not parser.ready
        parser.feed(data[i:i + 1])
    (req,) = parser.ready
    assert (req.method, req.target, req.body, req.header(b"x-a")) == (b"POST", b"/x?q", b"body", b"1")


def test_progress_flags() -> None:
    parser = RequestParser(ParserLimits())
    assert not parser.in_message
    parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\n")
    assert parser.in_message and not parser.headers_done
    parser.feed(b"Content-Length: 4\r\n\r\nab")
    assert parser.in_message and parser.headers_done and not parser.ready
    parser.feed(b"cd")
    assert not parser.in_message and not parser.headers_done and len(parser.ready) == 1


def test_expect_100_continue() -> None:
    parser = RequestParser(ParserLimits())
    parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    assert parser.continue_wanted and not parser.ready
    parser.feed(b"ok")
    (req,) = parser.ready
    assert req.body == b"ok"
    assert req.header(b"expect") is None  # hop-by-hop: never forwarded
    assert not parser.continue_wanted


def test_expect_100_continue_case_insensitive_and_ignored_on_http10() -> None:
    parser = RequestParser(ParserLimits())
    parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n")
    assert parser.continue_wanted
    parser = RequestParser(ParserLimits())
    parser.feed(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
    assert not parser.continue_wanted


@given(st.lists(st.integers(min_value=0, max_value=400), max_size=8))
@settings(max_examples=150, deadline=None)
def test_any_split_gives_the_same_requests(cuts: list[int]) -> None:
    data = (
        b"GET /1 HTTP/1.1\r\nHost: a\r\nX-Request-Id: r1\r\n\r\n"
        b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world"
        b"PUT /3 HTTP/1.1\r\nHost: b:1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\na\r\n0123456789\r\n0\r\n\r\n"
        b"DELETE /4 HTTP/1.0\r\n\r\n"
    )
    expected = [(r.method, r.target, r.headers, r.body, r.host, r.keep_alive) for r in parse(data)]
    parser = RequestParser(ParserLimits())
    start = 0
    for cut in [*sorted({min(c, len(data)) for c in cuts}), len(data)]:
        parser.feed(data[start:cut])
        start = cut
    got = [(r.method, r.target, r.headers, r.body, r.host, r.keep_alive) for r in parser.ready]
    assert got == expected
    assert len(got) == 4


# malformed and ambiguous requests: 400, and the connection is then closed by the server ------------
MALFORMED = {
    "cl_and_te": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"0\r\n\r\n", "malformed_request"),
    "te_and_cl": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
                  b"0\r\n\r\n", "malformed_request"),
    "duplicate_content_length": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n"
                                 b"abc", "malformed_request"),
    "conflicting_content_length": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"
                                   b"abcd", "malformed_request"),
    "content_length_list": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc", "malformed_request"),
    "negative_content_length": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", "malformed_request"),
    "plus_content_length": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc", "malformed_request"),
    "bad_chunk_size": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
                       "malformed_request"),
    "chunk_size_overflow": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"fffffffffffffffffff\r\nabc\r\n0\r\n\r\n", "malformed_request"),
    "chunk_size_bare_lf": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
                           "malformed_request"),
    "chunk_data_too_long": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n",
                            "malformed_request"),
    "obs_fold": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n  c\r\n\r\n", "malformed_request"),
    "bare_lf_request_line": (b"GET / HTTP/1.1\nHost: a\r\n\r\n", "malformed_request"),
    "bare_lf_header": (b"GET / HTTP/1.1\r\nHost: a\nX-B: c\r\n\r\n", "malformed_request"),
    "xchunked": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", "malformed_request"),
    "chunked_then_identity": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n"
                              b"0\r\n\r\n", "malformed_request"),
    "two_transfer_encodings": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                               b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "malformed_request"),
    "space_before_colon": (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", "malformed_request"),
    "nul_in_value": (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", "malformed_request"),
    "lower_case_method": (b"get / HTTP/1.1\r\nHost: a\r\n\r\n", "malformed_request"),
    "http_1_2": (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", "malformed_request"),
    "te_on_http10": (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "te_on_http10"),
    "two_hosts": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "duplicate_host"),
    "two_hosts_same": (b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", "duplicate_host"),
    "missing_host": (b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", "missing_host"),
    "http09": (b"GET /\r\n\r\n", "unsupported_version"),
    "http2_over_http1": (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", "unsupported_version"),
    "unsupported_expect": (b"POST / HTTP/1.1\r\nHost: a\r\nExpect: something\r\nContent-Length: 1\r\n\r\nx",
                           "unsupported_expect"),
    "upgrade": (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
                "upgrade_not_supported"),
    "connect": (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", "upgrade_not_supported"),
    "connect_origin_form": (b"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", "upgrade_not_supported"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_is_400(name: str) -> None:
    data, reason = MALFORMED[name]
    error = failure(data)
    assert type(error) is BadRequest
    assert (error.status, error.reason, error.flag) == (400, reason, "DPE")


@pytest.mark.parametrize("coding", [b"gzip, chunked", b"deflate, chunked", b"compress, chunked"])
def test_transfer_codings_other_than_chunked_are_refused(coding: bytes) -> None:
    # The proxy only removes chunked framing; forwarding a body still gzip-coded without saying so corrupts it.
    error = failure(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: " + coding + b"\r\n\r\n0\r\n\r\n")
    assert (type(error), error.status, error.reason) == (BadRequest, 400, "malformed_request")


def test_chunked_is_case_insensitive() -> None:
    req = parse_one(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n")
    assert req.body == b"z"


def test_error_after_good_requests_keeps_them() -> None:
    parser = RequestParser(ParserLimits())
    with pytest.raises(BadRequest):
        parser.feed(b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\nGET /bad HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    assert [r.target for r in parser.ready] == [b"/ok"]


@pytest.mark.parametrize(
    "upgrade",
    [b"GET /up HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
     b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"],
)
def test_an_upgrade_request_is_never_handed_on(upgrade: bytes) -> None:
    parser = RequestParser(ParserLimits())
    with pytest.raises(BadRequest) as info:
        parser.feed(b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n" + upgrade)
    assert info.value.reason == "upgrade_not_supported"
    assert [r.target for r in parser.ready] == [b"/ok"]


# limits --------------------------------------------------------------------------------------------
SMALL = ParserLimits(max_header_bytes=512, max_body_bytes=100)


def test_declared_body_too_large_is_413_before_the_body_arrives() -> None:
    error = failure(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n", SMALL)
    assert (type(error), error.status, error.reason) == (PayloadTooLarge, 413, "body_too_large")


def test_body_at_the_limit_is_fine() -> None:
    req = parse_one(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n" + b"x" * 100, SMALL)
    assert len(req.body) == 100


def test_chunked_body_too_large_is_413() -> None:
    parser = RequestParser(SMALL)
    parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    parser.feed(b"40\r\n" + b"x" * 64 + b"\r\n")
    with pytest.raises(PayloadTooLarge) as info:
        parser.feed(b"40\r\n" + b"x" * 64 + b"\r\n")
    assert (info.value.status, info.value.reason) == (413, "body_too_large")


def test_headers_too_large_is_431() -> None:
    headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 40) for i in range(20))
    error = failure(b"GET / HTTP/1.1\r\nHost: a\r\n" + headers + b"\r\n", SMALL)
    assert (type(error), error.status, error.reason) == (HeadersTooLarge, 431, "headers_too_large")


def test_request_line_too_long_is_431() -> None:
    error = failure(b"GET /" + b"a" * 600 + b" HTTP/1.1\r\nHost: a\r\n\r\n", SMALL)
    assert (type(error), error.status) == (HeadersTooLarge, 431)


def test_unterminated_header_line_is_bounded() -> None:
    # One header line that never ends must not be buffered without limit while it trickles in.
    parser = RequestParser(SMALL)
    parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: ")
    with pytest.raises(HeadersTooLarge):
        for _ in range(64):
            parser.feed(b"a" * 256)


def test_head_bound_does_not_count_the_previous_message() -> None:
    parser = RequestParser(SMALL)
    parser.feed(b"POST /1 HTTP/1.1\r\nHost: a\r\n")
    # Ends the first head, carries its body, and opens the next head: more than 512 bytes, all legitimate.
    parser.feed(b"Content-Length: 100\r\n\r\n" + b"b" * 100 + b"GET /2 HTTP/1.1\r\nHost: a\r\nX-A: " + b"v" * 380)
    parser.feed(b"\r\n\r\n")
    assert [r.target for r in parser.ready] == [b"/1", b"/2"]


def test_limits_reset_per_request() -> None:
    one = b"POST / HTTP/1.1\r\nHost: a\r\nX-Pad: " + b"p" * 300 + b"\r\nContent-Length: 80\r\n\r\n" + b"b" * 80
    requests = parse(one * 5, SMALL)
    assert len(requests) == 5


# one request, as routing, policies and the upstream will all see it ---------------------------------
def test_the_path_is_normalised_and_the_query_left_alone() -> None:
    req = parse_one(b"GET /a/./b/../%63//d%2e?x=%2e%2E/..//&y=%61 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (req.path, req.query) == (b"/a/c/d.", b"x=%2e%2E/..//&y=%61")
    assert req.target == b"/a/c/d.?x=%2e%2E/..//&y=%61"


@pytest.mark.parametrize(("target", "reason"), [
    (b"/admin#x", "fragment_in_target"), (b"/a?b#c", "fragment_in_target"), (b"/a%2Fb", "escaped_slash_in_path"),
    (b"/admin;x", "path_parameters"), (b"/a\\b", "invalid_path"), (b"/a%00", "invalid_path"),
    (b"/%ff", "invalid_path"), (b"/bad%zz", "invalid_path"),
])
def test_a_path_that_cannot_be_made_unambiguous_is_400(target: bytes, reason: str) -> None:
    error = failure(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (type(error), error.status, error.reason) == (BadRequest, 400, reason)


def test_path_rules_come_from_the_listener() -> None:
    from meshbatch.http.paths import PathRules

    limits = ParserLimits(paths=PathRules(escaped_slashes="keep", path_parameters="keep"))
    assert parse_one(b"GET /a%2fb;c HTTP/1.1\r\nHost: a\r\n\r\n", limits).path == b"/a%2Fb;c"


def test_asterisk_is_for_options_only() -> None:
    assert failure(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n").reason == "invalid_target"


@pytest.mark.parametrize("host", [b"a@b", b"svc/../admin", b"svc:x", b"svc%2F", b"[::1", b"svc\xc3\xa9"])
def test_an_invalid_host_is_400(host: bytes) -> None:
    error = failure(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    assert (error.status, error.reason) == (400, "invalid_host")


def test_one_trailing_dot_of_the_host_is_dropped() -> None:
    req = parse_one(b"GET / HTTP/1.1\r\nHost: Service.:8080\r\n\r\n")
    assert (req.host, req.header(b"host")) == (b"service", b"Service:8080")


@pytest.mark.parametrize("name", [
    b"Authorization", b"Proxy-Authorization", b"Idempotency-Key", b"X-Meshbatch-Priority", b"X-Meshbatch-Deadline-Ms",
    b"X-Request-Id", b"Traceparent", b"Content-Type", b"Content-Encoding", b"X-Forwarded-Proto", b"Expect",
    b"X-Meshbatch-Fault-Abort",  # (a repeated Transfer-Encoding or Content-Length llhttp refuses itself)
])
def test_a_header_the_proxy_acts_on_may_come_once(name: bytes) -> None:
    value = b"100-continue" if name == b"Expect" else b"v"
    data = b"POST / HTTP/1.1\r\nHost: a\r\n" + name + b": " + value + b"\r\n" + name.lower() + b": " + value + \
        b"\r\nContent-Length: 0\r\n\r\n"
    error = failure(data)
    assert (type(error), error.status, error.reason) == (BadRequest, 400, "duplicate_header")
    assert name.lower().decode() in error.detail


def test_list_headers_may_repeat() -> None:
    req = parse_one(b"GET / HTTP/1.1\r\nHost: a\r\nAccept: a\r\nAccept: b\r\nX-Forwarded-For: 1.1.1.1\r\n"
                    b"X-Forwarded-For: 2.2.2.2\r\nTracestate: a=1\r\nTracestate: b=2\r\nX-Custom: 1\r\n"
                    b"X-Custom: 2\r\n\r\n")
    assert len(req.headers) == 9


def test_header_fields_are_capped() -> None:
    limits = ParserLimits(max_headers=10)
    fields = b"".join(b"X-F%d: v\r\n" % i for i in range(9))
    assert len(parse_one(b"GET / HTTP/1.1\r\nHost: a\r\n" + fields + b"\r\n", limits).headers) == 10
    error = failure(b"GET / HTTP/1.1\r\nHost: a\r\n" + fields + b"X-One-More: v\r\n\r\n", limits)
    assert (type(error), error.status, error.reason) == (HeadersTooLarge, 431, "too_many_headers")
    assert ParserLimits().max_headers == 100


def test_trailer_fields_are_capped_apart() -> None:
    limits = ParserLimits(max_headers=3)
    head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n1\r\nz\r\n0\r\n"
    assert parse_one(head + b"T1: 1\r\nT2: 2\r\nT3: 3\r\n\r\n", limits).body == b"z"
    error = failure(head + b"T1: 1\r\nT2: 2\r\nT3: 3\r\nT4: 4\r\n\r\n", limits)
    assert (error.status, error.reason) == (431, "too_many_headers")


def test_connection_nominations_are_applied_but_never_to_protected_fields() -> None:
    req = parse_one(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Hop, host, x-request-id, traceparent, "
                    b"content-type, x-meshbatch-priority, x-forwarded-for\r\nX-Hop: 1\r\nX-Request-Id: r1\r\n"
                    b"Traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
                    b"Content-Type: text/plain\r\nX-Meshbatch-Priority: high\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n")
    names = [name for name, _ in req.headers]
    assert b"x-hop" not in names
    for kept in (b"host", b"x-request-id", b"traceparent", b"content-type", b"x-meshbatch-priority",
                 b"x-forwarded-for"):
        assert kept in names, kept
    assert (req.host, req.request_id) == (b"a", b"r1")


# forwarded headers: whom to believe ---------------------------------------------------------------
SPOOFED = (b"X-Forwarded-For: 6.6.6.6, 7.7.7.7\r\nForwarded: for=6.6.6.6\r\nX-Forwarded-Proto: https\r\n"
           b"X-Forwarded-Host: evil.example\r\nX-Real-IP: 6.6.6.6\r\n"
           b"X-Request-Id: mine\r\nTraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
           b"Tracestate: k=v\r\n")


def _forwarded(trust: object) -> Request:
    from meshbatch.http.forwarded import Trust

    assert isinstance(trust, Trust)
    return parse_one(b"GET / HTTP/1.1\r\nHost: a\r\n" + SPOOFED + b"\r\n", ParserLimits(trust=trust))


def test_inside_the_mesh_forwarding_headers_pass_but_the_client_is_the_peer() -> None:
    from meshbatch.http.forwarded import Trust

    req = _forwarded(Trust())
    names = [name for name, _ in req.headers]
    assert (req.client, req.peer, req.request_id) == ("10.0.0.1", "10.0.0.1", b"mine")
    assert b"x-forwarded-for" in names and b"forwarded" in names and b"traceparent" in names
    assert b"x-forwarded-proto" not in names  # believed from trusted hops only


def test_an_edge_listener_drops_what_a_client_claims() -> None:
    from meshbatch.http.forwarded import Trust

    req = _forwarded(Trust(edge=True))
    names = {name for name, _ in req.headers}
    assert not names & {b"x-forwarded-for", b"forwarded", b"x-forwarded-proto", b"x-forwarded-host", b"x-real-ip",
                        b"x-request-id", b"traceparent", b"tracestate"}
    assert (req.client, req.request_id) == ("10.0.0.1", b"")  # the server generates an id


def test_an_edge_listener_may_keep_request_ids_and_traces() -> None:
    from meshbatch.http.forwarded import Trust

    req = _forwarded(Trust(edge=True, preserve_external_request_id=True, preserve_external_trace=True))
    names = {name for name, _ in req.headers}
    assert {b"traceparent", b"tracestate"} <= names and req.request_id == b"mine"


def test_trusted_hops_name_the_client() -> None:
    from meshbatch.http.forwarded import Trust

    req = _forwarded(Trust(edge=True, xff_num_trusted_hops=1))
    assert (req.client, req.peer) == ("7.7.7.7", "10.0.0.1")
    names = {name for name, _ in req.headers}
    assert {b"x-forwarded-for", b"forwarded", b"x-forwarded-proto", b"x-forwarded-host"} <= names  # the hop's
    assert _forwarded(Trust(xff_num_trusted_hops=2)).client == "6.6.6.6"
    assert _forwarded(Trust(xff_num_trusted_hops=3)).client == "10.0.0.1"  # not that many hops: the peer


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(["a", "B", ".", "..", "%2e", "%41", "%2F", "%zz", ";", "~", "-", "_", "é", "\\", "\"",
                                 "{", "|", "/", "//", "%20", ":", "@", "!", "$", "'", "*", "+", ","]), max_size=10))
def test_every_path_the_parser_hands_on_is_in_normal_form(parts: list[str]) -> None:
    from meshbatch.http.paths import normalize_path

    path = ("/" + "".join(parts)).encode()
    path = path.replace(b"\xc3\xa9", b"%C3%A9")  # (llhttp refuses raw non-ASCII in a target)
    try:
        expected: bytes | str = normalize_path(path)
    except BadRequest as error:
        expected = error.reason
    try:
        got: bytes | str = parse_one(b"GET " + path + b" HTTP/1.1\r\nHost: a\r\n\r\n").path
    except ProxyError as error:
        got = error.reason
    assert got == expected
