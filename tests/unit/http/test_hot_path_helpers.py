"""The helpers the HTTP/1.1 hot path uses instead of slower general calls, each checked against the call it
stands in for: header names lowered through a bounded table, values trimmed, the version read from the request
line, request ids cut from a shared random read, `content-length` lines kept per length."""

from __future__ import annotations

import random
import re

import httptools
import pytest

from meshbatch.http import answer_head as heads
from meshbatch.http import names
from meshbatch.http.answer_head import MAX_HEADS, answer_head, forget_heads
from meshbatch.http.names import (
    MAX_FIELD_BYTES,
    MAX_FIELDS,
    MAX_NAME_BYTES,
    MAX_NAMES,
    forget_names,
    header_field,
    lower_name,
    trim,
)
from meshbatch.http.request_line import line_version
from meshbatch.http.serialize import length_field
from meshbatch.http.serving import _RequestIds, new_request_id


@pytest.fixture(autouse=True)
def _empty_table() -> None:
    forget_names()
    forget_heads()


def test_a_lowered_name_is_the_lower_case_of_every_spelling() -> None:
    for name in (b"Content-Type", b"content-type", b"CONTENT-TYPE", b"X-Request-ID", b"", b"A", b"x_y~z!"):
        assert lower_name(name) == name.lower()
        assert lower_name(name) == name.lower()  # (the second time from the table)
    assert lower_name(b"Server") is lower_name(b"SERVER") is lower_name(b"server")  # one shared object


def test_the_name_table_is_bounded_and_keeps_no_long_name() -> None:
    long = b"X-" + b"A" * MAX_NAME_BYTES
    assert lower_name(long) == long.lower()
    assert long not in names._LOWER
    spellings = [b"X-Name-%d" % i for i in range(3 * MAX_NAMES)]
    for name in spellings:
        assert lower_name(name) == name.lower()
    assert MAX_NAMES - 2 <= len(names._LOWER) <= MAX_NAMES
    for name in reversed(spellings):  # found or not, always right
        assert lower_name(name) == name.lower()


def test_trim_strips_what_strip_does() -> None:
    rng = random.Random(7)
    values = [b"", b" ", b"\t", b"a", b" a", b"a ", b"\t a \t", b"a b", b" \t\t ", b"\x0ba\x0b", b"\r a \n"]
    values += [bytes(rng.choice(b" \tab") for _ in range(rng.randrange(8))) for _ in range(500)]
    for value in values:
        assert trim(value) == value.strip(b" \t"), value
    same = b"no-spaces"
    assert trim(same) is same


def test_a_header_line_splits_as_partition_lower_and_strip_split_it() -> None:
    lines = [b"Server: nginx", b"server:nginx", b"X-A:\t a b \t", b"X-Empty:", b"X-Colon: a:b: c", b"K:" + b"v" * 200]
    for line in lines * 2:  # (the second time from the table, but for the long line)
        name, _, value = line.partition(b":")
        assert header_field(line) == (name.lower(), value.strip(b" \t"))
    assert lines[-1] not in names._FIELDS and len(lines[-1]) > MAX_FIELD_BYTES


def test_the_line_table_empties_when_full_and_fills_again() -> None:
    for i in range(MAX_FIELDS):
        header_field(b"Date: %d" % i)
    assert len(names._FIELDS) == MAX_FIELDS
    assert header_field(b"Server: nginx") == (b"server", b"nginx")
    assert list(names._FIELDS) == [b"Server: nginx"]
    assert header_field(b"Date: 3") == (b"date", b"3")


def _httptools_version(data: bytes) -> str:
    class Sink:
        pass

    parser = httptools.HttpRequestParser(Sink())
    parser.feed_data(data)
    return parser.get_http_version()


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"POST /x?y=HTTP/1.0 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    b"GET http://a/b HTTP/1.0\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
])
def test_the_version_read_from_the_request_line_is_the_one_httptools_gives(data: bytes) -> None:
    target = data.split(b" ")[1]
    assert line_version(data, len(target)) == _httptools_version(data)
    if data.startswith(b"GET "):  # a read that begins after the method, or in it
        assert line_version(data[4:], len(target)) == line_version(data[2:], len(target)) == _httptools_version(data)


@pytest.mark.parametrize("data", [b"", b"\r\nGET / HTTP/1.1\r\n\r\n", b"\nGET / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1",
                                  b"GET / HTTP/2.0\r\n\r\n", b"GET / HTTP/0.9\r\n\r\n", b"A\r\n"])
def test_a_version_not_known_from_the_line_is_left_to_httptools(data: bytes) -> None:
    assert line_version(data, 1) == ""


def test_request_ids_are_32_hex_digits_and_unique_across_refills() -> None:
    ids = [new_request_id() for _ in range(1000)]  # several reads of the random source
    assert all(re.fullmatch(rb"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_process_forgets_the_ids_its_parent_had() -> None:
    ids = _RequestIds()
    first = ids.next()
    ids.forget()
    assert ids.next() != first
    assert ids._at == 32  # a fresh read


def test_length_fields_for_small_and_large_lengths() -> None:
    for length in (0, 1, 12, 4095, 4096, 10**9):
        assert length_field(length) == b"content-length: " + str(length).encode() + b"\r\n"
        assert length_field(length) == b"content-length: " + str(length).encode() + b"\r\n"  # (kept ones too)


# the readers that use them -----------------------------------------------------------------------------------
def _versions(pieces: list[bytes]) -> list[tuple[bytes, bool]]:
    from meshbatch.http.parser import ParserLimits, RequestParser

    parser = RequestParser(ParserLimits(), "10.0.0.1")
    for piece in pieces:
        parser.feed(piece)
    return [(request.version, request.keep_alive) for request in parser.ready]


ELEVEN = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n"
TEN = b"GET /b HTTP/1.0\r\n\r\n"  # (closes the connection: last)
KEPT = b"GET /c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
POSTED = b"POST /d HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 15\r\n\r\nGET / HTTP/1.1\r"


@pytest.mark.parametrize(("stream", "expected"), [
    (ELEVEN + KEPT + ELEVEN + TEN, [b"1.1", b"1.0", b"1.1", b"1.0"]),
    (KEPT + ELEVEN, [b"1.0", b"1.1"]),
    (b"\r\n" + KEPT + b"\r\n" + ELEVEN, [b"1.0", b"1.1"]),
    (POSTED + ELEVEN + POSTED + TEN, [b"1.0", b"1.1", b"1.0", b"1.0"]),
])
def test_request_versions_are_the_same_whatever_the_reads(stream: bytes, expected: list[bytes]) -> None:
    whole = _versions([stream])
    assert [version for version, _ in whole] == expected
    assert whole == _versions([stream[i:i + 1] for i in range(len(stream))])  # (each version from httptools)
    for cut in range(1, len(stream)):
        assert _versions([stream[:cut], stream[cut:]]) == whole, cut


def test_the_answer_headers_are_those_of_the_plain_reading() -> None:
    from meshbatch.http.client_machine import ENDED, ResponseReader
    from meshbatch.http.serialize import end_to_end

    lines = [b"Server: nginx", b"content-type:text/plain", b"X-Spaced: \t a b \t", b"X-EMPTY:", b"X-Tab:\tv",
             b"Connection: Keep-Alive", b"SERVER: again", b"Keep-Alive: timeout=5", b"Set-Cookie: a=b; Path=/"]
    for connection in (b"keep-alive", b"close", b"CLOSE", b" x-tab , Keep-Alive", b"X-Spaced"):
        head = [line if not line.startswith(b"Connection") else b"Connection: " + connection for line in lines]
        answer = b"HTTP/1.1 200 OK\r\n" + b"\r\n".join(head) + b"\r\nContent-Length: 2\r\n\r\nok"
        plain = [(name.lower(), value.strip(b" \t")) for name, _, value in (line.partition(b":") for line in head)]
        for _ in range(2):  # (the second time, every line from the table)
            reader = ResponseReader(1 << 20)
            reader.start(False)
            assert reader.feed(answer, 0) == ENDED
            assert reader.response().headers == end_to_end(plain), connection
            assert reader.keep_alive == (connection.strip().lower() != b"close")
            assert reader.length == 2


def _plain_head(head: bytes) -> tuple[list[tuple[bytes, bytes]], int, bool, bool, bool, bytes]:
    """An answer head read line by line with the plain calls (what the reader did before the table)."""
    from meshbatch.http.serialize import HOP_BY_HOP

    fields, length, framed, chunked, coded, named = [], -1, False, False, False, b""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.lower()
        if name not in HOP_BY_HOP:
            fields.append((name, value.strip(b" \t")))
        elif name == b"content-length":
            framed, length = True, int(value)
        elif name == b"transfer-encoding":
            chunked = framed = value.rstrip(b" \t").lower().endswith(b"chunked")
            coded = True
        elif name == b"connection" and value.strip(b" \t").lower() not in (b"keep-alive", b"close"):
            named = value.strip(b" \t").lower()
    return fields, length, framed, chunked, coded, named


@pytest.mark.parametrize("head", [
    b"HTTP/1.1 200 OK",
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 12\r\nConnection: keep-alive",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked \r\nX-A:  b ",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nConnection: X-A, Close\r\nX-A: 1\r\nKeep-Alive: t=5",
    b"HTTP/1.0 204 No Content\r\nCONNECTION: Keep-Alive\r\nconnection: x-b\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2",
])
def test_an_answer_head_reads_as_the_plain_calls_read_it(head: bytes) -> None:
    read = answer_head(head)
    fields, length, framed, chunked, coded, named = _plain_head(head)
    assert (list(read.fields), read.length, read.framed, read.chunked, read.coded, read.named) == \
        (fields, length, framed, chunked, coded, named)
    assert answer_head(head) is read  # the second time from the table


def test_the_head_table_empties_when_full_and_keeps_no_large_head() -> None:
    for i in range(MAX_HEADS):
        answer_head(b"HTTP/1.1 200 OK\r\nDate: %d" % i)
    assert len(heads._HEADS) == MAX_HEADS
    answer_head(b"HTTP/1.1 200 OK\r\nServer: a")
    assert list(heads._HEADS) == [b"HTTP/1.1 200 OK\r\nServer: a"]
    large = b"HTTP/1.1 200 OK\r\nX-Big: " + b"v" * heads.MAX_HEAD_BYTES
    assert answer_head(large).fields == ((b"x-big", b"v" * heads.MAX_HEAD_BYTES),)
    assert large not in heads._HEADS


@pytest.mark.parametrize("target", [b"/", b"/a?b=c", b"/a?", b"?x", b"/a?b?c", b"*", b"http://h/p?q"])
def test_a_request_splits_its_target_as_partition_splits_it(target: bytes) -> None:
    from meshbatch.http.message import Request

    request = Request(b"GET", target, [])
    path, _, query = target.partition(b"?")
    assert (request.path, request.query) == (path, query)


def test_a_name_memo_lowers_as_lower_does_whatever_the_order() -> None:
    from meshbatch.http.names import MAX_POSITIONS, NameMemo

    memo = NameMemo()
    rng = random.Random(3)
    spellings = [b"Host", b"host", b"User-Agent", b"ACCEPT", b"X-A", b"x-a", b"Content-Length"]
    requests = [spellings[:4]] * 3 + [[rng.choice(spellings) for _ in range(rng.randrange(6))] for _ in range(200)]
    requests.append([b"X-%d" % i for i in range(MAX_POSITIONS + 5)])  # (more fields than positions remembered)
    requests.append([b"X-%d" % i for i in range(MAX_POSITIONS + 5)])
    for request in requests:
        for position, name in enumerate(request, 1):
            assert memo.lower(position, name) == name.lower()


def test_an_answer_head_encodes_as_its_fields_do_whatever_became_of_them() -> None:
    from meshbatch.http.client_machine import ENDED, ResponseReader
    from meshbatch.http.message import Response
    from meshbatch.http.serialize import encode_response

    answer = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nok"
    changes = [
        lambda h: None,
        lambda h: h.append((b"via", b"1.1 meshbatch")),
        lambda h: h.__setitem__(1, (b"content-type", b"text/html")),  # a new tuple where the upstream's was
        lambda h: h.pop(0),
        lambda h: h.insert(0, (b"x-first", b"1")),
        lambda h: h.clear(),
        lambda h: h.reverse(),
    ]
    for change in changes:
        for _ in range(2):  # (the second answer's head from the table)
            reader = ResponseReader(1 << 20)
            reader.start(False)
            assert reader.feed(answer, 0) == ENDED
            response = reader.response()
            assert response.head_block == b"server: nginx\r\ncontent-type: text/plain\r\nx-a: 1\r\n"
            change(response.headers)
            plain = Response(response.status, list(response.headers), response.body)  # (no block)
            for keep_alive, request_id in ((True, b"abc"), (False, b"")):
                assert encode_response(response, keep_alive, request_id=request_id) == \
                    encode_response(plain, keep_alive, request_id=request_id)


@pytest.mark.parametrize("target", [b"/#", b"/a#b", b"/a?b#c", b"http://h/a#b", b"http://h/#"])
def test_a_target_with_a_fragment_is_refused_wherever_the_fragment_is(target: bytes) -> None:
    from meshbatch.errors import BadRequest
    from meshbatch.http.parser import ParserLimits, RequestParser

    parser = RequestParser(ParserLimits())
    with pytest.raises(BadRequest) as info:
        parser.feed(b"GET " + target + b" HTTP/1.1\r\nHost: h\r\n\r\n")
    assert info.value.reason == "fragment_in_target"
    parser = RequestParser(ParserLimits())
    parser.feed(b"GET " + target.replace(b"#", b"%23") + b" HTTP/1.1\r\nHost: h\r\n\r\n")  # (escaped: served)
    assert parser.ready[0].body == b""
