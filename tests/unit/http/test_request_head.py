"""A request's header section read at once (http/request_head.py, the quick parser of http/parser.py) against
httptools' callback per field, which reads every request when the quick way is off: the same requests, fields and
bodies, and the same refusals for the same reasons, for benign and hostile heads (smuggling attempts, obs-fold,
bare CR and LF, NUL, over-long and too many fields), whatever the reads; the table of sections bounded; the
upstream head encoded from a kept section equal to the field-by-field encoding, for every change to its headers."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshbatch.errors import ProxyError
from meshbatch.http import request_head as heads
from meshbatch.http.forwarded import Trust
from meshbatch.http.limits import ParserLimits
from meshbatch.http.message import Headers
from meshbatch.http.parser import RequestParser
from meshbatch.http.request_head import MAX_SECTION_BYTES, MAX_SECTIONS, forget_sections, known_block, request_head
from meshbatch.http.serialize import _fields, encode_request

CORPUS = sorted((Path(__file__).parents[2] / "fuzz" / "corpus" / "parser").glob("*.bin"))
LIMITS = ParserLimits(max_header_bytes=512, max_body_bytes=4096, max_headers=8)
TRUSTS = [Trust(), Trust(edge=True), Trust(xff_num_trusted_hops=1),
          Trust(edge=True, preserve_external_request_id=True, preserve_external_trace=True)]


@pytest.fixture(autouse=True)
def _empty_table() -> None:
    forget_sections()


Seen = tuple[list[tuple[object, ...]], str, bool]


def prime(data: bytes) -> None:
    """Keep every header section `data` may hold, so that the quick way is tried at first sight."""
    for head in data.split(b"\r\n\r\n"):
        _line, crlf, section = head.partition(b"\r\n")
        if crlf:
            request_head(section)


def read(chunks: list[bytes], quick: bool, limits: ParserLimits = LIMITS) -> Seen:
    """What a reader makes of `chunks`: its requests, its error, whether it waits inside a request."""
    parser = RequestParser(limits, "10.0.0.1", b"https")
    if quick:
        prime(b"".join(chunks))
    else:
        parser._sticky = True  # (the quick way is never taken: every request through httptools' callbacks)
    error = ""
    try:
        for chunk in chunks:
            parser.feed(chunk, 1.0)
    except ProxyError as exc:
        error = f"{exc.status} {exc.reason} {exc.detail}"
    requests = [(r.method, r.target, r.headers, r.body, r.host, r.version, r.keep_alive, r.client, r.peer,
                 r.request_id, r.query) for r in parser.ready]
    return requests, error, parser.in_message


def same(data: bytes, limits: ParserLimits = LIMITS) -> None:
    """Read whole, and in two reads split at every byte: the quick way sees what the callbacks see."""
    expected = read([data], False, limits)
    assert read([data], True, limits) == expected
    for i in range(1, len(data)):
        parts = [data[:i], data[i:]]
        assert read(parts, True, limits) == read(parts, False, limits), (data, i)


GET = b"GET /a?b=1 HTTP/1.1\r\nHost: svc\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
POST = b"POST /p HTTP/1.1\r\nHost: svc\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello"

HEADS = [
    GET,
    POST,
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: svc\r\nX:  spaced \t\r\nY:\r\nZ: \r\n\r\n",
    b"GET / HTTP/1.1\r\nHOST: Svc.Example.\r\nX-Request-ID: abc\r\nTraceparent: 00-1-2-01\r\nTracestate: a=b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: svc\r\nX-Forwarded-For: 1.2.3.4, 5.6.7.8\r\nX-Forwarded-Proto: http\r\n"
    b"Forwarded: for=1.2.3.4\r\nX-Real-IP: 1.2.3.4\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: svc\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\nX-Keep: 2\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: svc\r\nX-Meshbatch-Deadline-Ms: 50\r\nx-meshbatch-tenant: t\r\n\r\n",
    b"GET http://svc:8080/x HTTP/1.1\r\nHost: svc:8080\r\n\r\n",
    b"GET http://other/x HTTP/1.1\r\nHost: svc\r\n\r\n",
    b"GET /a/../b//c/./d%2e HTTP/1.1\r\nHost: svc\r\n\r\n",
    b"GET /a#frag HTTP/1.1\r\nHost: svc\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: svc\r\n\r\n",
    b"GET * HTTP/1.1\r\nHost: svc\r\n\r\n",
    b"CONNECT svc:443 HTTP/1.1\r\nHost: svc:443\r\n\r\n",
    b"CONNECT /x HTTP/1.1\r\nHost: svc\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: svc\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
    b"HTTP2-Settings: AAMAAABk\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: svc\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: svc\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
    b"POST / HTTP/1.1\r\nHost: svc\r\nExpect: something\r\nContent-Length: 2\r\n\r\nok",
    b"POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: 1\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    # smuggling: both framings, two lengths, a length that is not one run of digits, TE on HTTP/1.0
    b"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    b"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: +3\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 1_0\r\n\r\nabcdefghij",
    b"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 3 \r\n\r\nabc",
    b"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: \r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 99999999\r\n\r\nabc",
    b"POST / HTTP/1.0\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n",
    b"GET / HTTP/2.0\r\nHost: svc\r\n\r\n",
    b"GET / HTTP/0.9\r\nHost: svc\r\n\r\n",
    # what llhttp refuses: obs-fold, bare LF and CR, NUL and DEL, spaces around a name, a line without a colon
    b"GET / HTTP/1.1\r\nHost: svc\r\nX: a\r\n b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: svc\r\nX: a\nY: b\r\n\r\n",
    b"GET / HTTP/1.1\nHost: svc\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: svc\r\nX: a\rb\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: svc\r\nX: a\x00b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: svc\r\nX: a\x7fb\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost : svc\r\n\r\n",
    b"GET / HTTP/1.1\r\n Host: svc\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: svc\r\nNoColon\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: svc\r\n: empty\r\n\r\n",
    b"GET / HTTP/1.1\r\nHo\x00st: svc\r\n\r\n",
    b"GET  / HTTP/1.1\r\nHost: svc\r\n\r\n",
    b"GET /a b HTTP/1.1\r\nHost: svc\r\n\r\n",
    b"\r\n\r\nGET / HTTP/1.1\r\nHost: svc\r\n\r\n",
    b"\r\n",
    # limits: too many fields, too many bytes, a long name and a long value
    b"GET / HTTP/1.1\r\nHost: svc\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(7)) + b"\r\n",
    b"GET / HTTP/1.1\r\nHost: svc\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(8)) + b"\r\n",
    b"GET / HTTP/1.1\r\nHost: svc\r\nX: " + b"v" * 470 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: svc\r\nX: " + b"v" * 490 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: svc\r\n" + b"N" * 600 + b": v\r\n\r\n",
    b"GET /" + b"p" * 600 + b" HTTP/1.1\r\nHost: svc\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: svc\r\nX-Meshbatch-A: 1\r\nX-Meshbatch-A: 2\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 5000\r\n\r\nabc",
]


@pytest.mark.parametrize("data", HEADS, ids=range(len(HEADS)))
def test_a_head_read_at_once_is_read_as_the_callbacks_read_it(data: bytes) -> None:
    same(data)


@pytest.mark.parametrize("trust", TRUSTS, ids=["plain", "edge", "hops", "preserving"])
def test_the_listener_s_trust_applies_to_a_section_kept_for_another(trust: Trust) -> None:
    limits = ParserLimits(trust=trust)
    for data in HEADS[6:9]:
        read([data], True)  # (kept under the default trust first)
        assert read([data], True, limits) == read([data], False, limits)


def test_pipelined_requests_whatever_the_reads() -> None:
    rng = random.Random(3)
    pieces = [GET, POST, HEADS[2], HEADS[3], HEADS[5], HEADS[8], HEADS[20], HEADS[22], HEADS[4]]
    for _ in range(150):
        stream = b"".join(rng.choice(pieces) for _ in range(rng.randrange(1, 5)))
        if rng.random() < 0.3:
            stream += rng.choice(HEADS)
        cuts = sorted(rng.sample(range(1, len(stream)), min(len(stream) - 1, rng.randrange(0, 4))))
        chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        assert read(chunks, True) == read(chunks, False), chunks


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_the_fuzz_seeds_read_as_the_callbacks_read_them(path: Path) -> None:
    data = path.read_bytes()
    assert read([data], True) == read([data], False)


_NAMES = st.sampled_from([b"Host", b"host", b"Content-Length", b"Transfer-Encoding", b"Connection", b"X-A", b"x-a",
                          b"Expect", b"X-Forwarded-For", b"X-Request-Id", b"Upgrade", b"X-Meshbatch-T", b"Via", b"TE",
                          b"", b"A B", b"A\x00", b"\x80"])
_VALUES = st.sampled_from([b"svc", b"0", b"3", b"03", b"-1", b"chunked", b"close", b"x-a", b"100-continue", b" v ",
                           b"a\rb", b"a\nb", b"a\x00", b"\t", b"", b"h2c", b"trailers"])
_LINE = st.tuples(_NAMES, st.sampled_from([b": ", b":", b" : ", b":\t"]), _VALUES).map(b"".join)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([b"GET / HTTP/1.1", b"POST /x HTTP/1.1", b"GET / HTTP/1.0", b"PUT * HTTP/1.1"]),
       st.lists(_LINE, max_size=6), st.sampled_from([b"", b"abc", b"0\r\n\r\n", b"GET / HTTP/1.1\r\nHost: b\r\n\r\n"]))
def test_made_up_heads_read_as_the_callbacks_read_them(line: bytes, fields: list[bytes], rest: bytes) -> None:
    data = b"\r\n".join([line, *fields]) + b"\r\n\r\n" + rest
    assert read([data], True) == read([data], False)


def test_each_request_gets_its_own_list_of_the_kept_fields() -> None:
    prime(GET + POST)
    parser = RequestParser(LIMITS, "10.0.0.1")
    parser.feed(GET + GET)
    first, second = parser.ready
    assert first.headers == second.headers and first.headers is not second.headers
    first.headers.append((b"x-added", b"1"))
    assert (b"x-added", b"1") not in second.headers
    assert all(a is b for a, b in zip(first.headers, second.headers, strict=False))  # (the section's own tuples)


def test_the_table_of_sections_is_bounded() -> None:
    for i in range(3 * MAX_SECTIONS):
        section = b"Host: svc\r\nX-Id: %d" % i
        assert request_head(section) is not None
        assert len(heads._SECTIONS) <= MAX_SECTIONS and len(heads._FIRST) <= MAX_SECTIONS
    long = b"Host: svc\r\nX: " + b"v" * MAX_SECTION_BYTES
    read_long = request_head(long)
    assert read_long is not None and read_long.fields[1] == (b"x", b"v" * MAX_SECTION_BYTES)
    assert long not in heads._SECTIONS
    assert known_block(list(read_long.fields)) is None  # (never kept: never found)


def test_sections_share_no_field_tuple() -> None:
    one = request_head(b"Host: svc\r\nX: 1")
    two = request_head(b"Host: svc\r\nX: 2")
    assert one is not None and two is not None
    assert one.fields[0] == two.fields[0] and one.fields[0] is not two.fields[0]
    assert known_block(list(two.fields)) is two and known_block(list(one.fields)) is one


def _by_field(method: bytes, target: bytes, headers: Headers, body: bytes) -> bytes:
    parts = [method, b" ", target, b" HTTP/1.1\r\n"]
    _fields(parts, headers)
    if body or method not in (b"GET", b"HEAD", b"DELETE", b"OPTIONS"):
        parts.append(b"content-length: %d\r\n" % len(body))
    parts.append(b"\r\n")
    return b"".join(parts) + body


def test_an_upstream_head_from_a_kept_section_is_the_field_by_field_one() -> None:
    prime(GET + POST)
    parser = RequestParser(LIMITS, "10.0.0.1")
    for _ in range(2):
        parser.feed(POST)
    kept = parser.ready[0].headers
    head = known_block(kept)
    assert head is not None and head.block == b"host: svc\r\ncontent-type: application/json\r\ncontent-length: 5\r\n"
    changes: list[Headers] = [
        list(kept),
        [*kept, (b"x-forwarded-for", b"10.0.0.1"), (b"via", b"1.1 meshbatch")],
        [(b"host", b"other"), *kept[1:]],
        kept[:1] + kept[2:],
        kept[1:],
        [kept[1], kept[0], *kept[2:]],
        [(b"x-first", b"1"), *kept],
        kept[:2],
        [],
    ]
    for headers in changes:
        for method, body in ((b"POST", b"hello"), (b"GET", b"")):
            assert encode_request(method, b"/p", headers, body) == _by_field(method, b"/p", headers, body)
    assert known_block(changes[1]) is head
    assert all(known_block(headers) is None for headers in changes[2:])


def test_the_quick_way_reads_plain_requests_and_leaves_the_rest() -> None:
    parser = RequestParser(LIMITS, "10.0.0.1")
    parser.feed(GET)
    assert parser._parser is parser._full  # (a section neither kept nor seen before: the usual way)
    parser.feed(POST)
    parser.feed(GET)
    assert parser._parser is parser._full and not heads._SECTIONS  # (not twice in a row)
    parser.feed(GET)
    assert parser._parser is parser._quick and len(heads._SECTIONS) == 1  # (twice in a row: read once, kept)
    parser.feed(POST[:-2])
    assert parser._parser is parser._full  # (the POST's section was not kept)
    parser.feed(POST[-2:])
    prime(POST)
    parser.feed(GET + POST[:-2])
    assert parser._parser is parser._quick and parser._left  # (the body follows)
    parser.feed(POST[-2:])
    assert len(parser.ready) == 7 and parser.ready[6].body == b"hello"
    parser.feed(HEADS[22])  # chunked: read the usual way
    assert parser._parser is parser._full and len(parser.ready) == 8


def test_a_connection_whose_heads_keep_changing_goes_the_usual_way_for_a_while() -> None:
    from meshbatch.http.parser import _MISSES, _SKIP

    parser = RequestParser(LIMITS, "10.0.0.1")
    stream = [b"GET / HTTP/1.1\r\nHost: svc\r\nX-Request-Id: %d\r\n\r\n" % i for i in range(_MISSES + _SKIP + 3)]
    for data in stream[:_MISSES]:
        parser.feed(data)
    assert parser._skip == _SKIP
    for data in stream[_MISSES:]:
        parser.feed(data)
    assert parser._skip == 0 and not heads._SECTIONS
    assert [r.request_id for r in parser.ready] == [b"%d" % i for i in range(len(stream))]
    assert read(stream, True) == read(stream, False)


def test_the_headers_sent_upstream_keep_the_reader_s_tuples() -> None:
    from meshbatch.upstream.headers import request_headers

    prime(GET + POST)
    parser = RequestParser(LIMITS, "10.0.0.1")
    parser.feed(GET + GET)
    for request in parser.ready:
        request.headers.append((b"x-request-id", b"abc"))
        out = request_headers(request, True, "svc")
        head = known_block(out)
        assert head is not None and len(head.fields) == 3
        assert encode_request(b"GET", b"/a", out, b"") == _by_field(b"GET", b"/a", out, b"")


def test_the_forwarding_fields_are_the_same_tuples_and_encode_as_field_by_field() -> None:
    from meshbatch.http.request_head import MAX_TAILS, forwarding, known_tail
    from meshbatch.upstream.headers import request_headers

    prime(GET + POST)
    parser = RequestParser(LIMITS, "10.0.0.1")
    parser.feed(GET + GET + b"GET / HTTP/1.1\r\nHost: svc\r\nX-Forwarded-For: 1.2.3.4\r\nVia: 1.0 edge\r\n\r\n")
    one, two, forwarded = (request_headers(request, True, "svc") for request in parser.ready)
    assert one[-3:] == [(b"x-forwarded-for", b"10.0.0.1"), (b"x-forwarded-proto", b"http"), (b"via", b"1.1 meshbatch")]
    assert all(a is b for a, b in zip(one[-3:], two[-3:], strict=True)) and known_tail(one) is known_tail(two)
    assert known_tail(forwarded) is None and forwarded[-3:] == [(b"x-forwarded-for", b"1.2.3.4, 10.0.0.1"),
                                                                (b"x-forwarded-proto", b"http"),
                                                                (b"via", b"1.0 edge, 1.1 meshbatch")]
    assert known_tail(request_headers(parser.ready[0], False, "svc")) is None
    tail = list(forwarding("10.0.0.2", b"https", b"1.1 meshbatch").fields)
    kept = list(parser.ready[0].headers)
    for headers in ([*kept, *tail], [*kept, (b"x-request-id", b"r"), *tail], tail, [*tail, (b"x", b"1")], tail[1:],
                    [*tail[:2], (b"via", b"1.1 meshbatch")], [*kept[:1], *tail], one, forwarded):
        assert encode_request(b"GET", b"/", headers, b"") == _by_field(b"GET", b"/", headers, b"")
    for i in range(3 * MAX_TAILS):
        forwarding(f"10.1.{i // 256}.{i % 256}", b"http", b"v")
        assert len(heads._TAILS) <= MAX_TAILS and len(heads._TAIL_FIRST) <= MAX_TAILS


def test_a_long_head_is_read_the_usual_way_and_not_remembered() -> None:
    limits = ParserLimits()
    long = b"GET / HTTP/1.1\r\nHost: svc\r\nX: " + b"v" * MAX_SECTION_BYTES + b"\r\n\r\n"
    parser = RequestParser(limits, "10.0.0.1")
    for _ in range(3):
        parser.feed(long)
        assert parser._parser is parser._full and parser._seen_section == b""
    assert read([long, long], True, limits) == read([long, long], False, limits)


def test_a_section_a_connection_holds_is_kept_again_after_the_table_is_emptied() -> None:
    parser = RequestParser(LIMITS, "10.0.0.1")
    parser.feed(GET + GET)
    for i in range(MAX_SECTIONS):  # (the table fills and is emptied)
        request_head(b"Host: svc\r\nX-Id: %d" % i)
    assert known_block(list(parser.ready[1].headers)) is None
    parser.feed(GET)
    assert known_block(list(parser.ready[2].headers)) is not None
