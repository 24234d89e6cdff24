"""Fuzzing the downstream request reader (hypothesis). A seed corpus (tests/fuzz/corpus/parser) runs first in CI,
then generated inputs: raw bytes, mutations of the seeds, and requests built from framing-relevant parts.

Properties: the reader either yields requests or raises one ProxyError (nothing else escapes); how the bytes
are split across reads never changes the outcome; an accepted request never carried both framings, carries
a Host on HTTP/1.1, and has exactly the body its framing announced."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshbatch.errors import ProxyError
from meshbatch.http.parser import ParserLimits, RequestParser

CORPUS = sorted((Path(__file__).parent / "corpus" / "parser").glob("*.bin"))
SEEDS = [path.read_bytes() for path in CORPUS]
LIMITS = ParserLimits(max_header_bytes=4096, max_body_bytes=65_536)
FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

Outcome = tuple[list[tuple[bytes, bytes, bytes, bytes]], str]


def run(chunks: list[bytes]) -> Outcome:
    parser = RequestParser(LIMITS, "127.0.0.1")
    error = ""
    try:
        for chunk in chunks:
            parser.feed(chunk)
    except ProxyError as exc:
        error = f"{exc.status} {exc.reason}"
    requests = [(r.method, r.target, r.host, r.body) for r in parser.ready]
    for request in parser.ready:
        names = [name for name, _ in request.headers]
        assert not (b"content-length" in names and b"transfer-encoding" in names)
        assert names.count(b"content-length") <= 1
        if request.version == b"1.1":
            assert names.count(b"host") == 1
        length = request.header(b"content-length")
        if length is not None:
            assert len(request.body) == int(length)
        assert len(request.body) <= LIMITS.max_body_bytes
    return requests, error


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_seed_corpus(path: Path) -> None:
    data = path.read_bytes()
    whole = run([data])
    assert run([data[i:i + 1] for i in range(len(data))]) == whole


@FUZZ
@given(st.binary(max_size=512), st.lists(st.integers(min_value=0, max_value=600), max_size=6))
def test_any_bytes(data: bytes, cuts: list[int]) -> None:
    assert run(split(data, cuts)) == run([data])


@FUZZ
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 400), st.binary(min_size=0, max_size=4)),
                                        min_size=1, max_size=4), st.lists(st.integers(0, 400), max_size=4))
def test_mutated_seeds(seed: bytes, edits: list[tuple[int, bytes]], cuts: list[int]) -> None:
    data = bytearray(seed)
    for at, replacement in edits:
        at %= len(data) + 1
        data[at:at + len(replacement)] = replacement
    assert run(split(bytes(data), cuts)) == run([bytes(data)])


NAMES = st.sampled_from([b"Content-Length", b"content-length", b"Transfer-Encoding", b"transfer-encoding", b"Host",
                         b"Transfer-Encoding ", b"X-Other", b"Expect", b"Connection"])
VALUES = st.sampled_from([b"5", b"0", b"+5", b"5, 5", b"chunked", b"Chunked", b" chunked", b"chunked, identity",
                          b"xchunked", b"identity", b"a", b"", b"100-continue", b"close", b"keep-alive",
                          b"\x0bchunked"])
BODIES = st.sampled_from([b"hello", b"5\r\nhello\r\n0\r\n\r\n", b"0\r\n\r\n", b"", b"ffffffffffffffffff1\r\nx\r\n",
                          b"GET /s HTTP/1.1\r\nHost: a\r\n\r\n"])


@FUZZ
@given(st.sampled_from([b"GET", b"POST", b"PUT"]), st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0"]),
       st.lists(st.tuples(NAMES, VALUES), max_size=5), BODIES, st.lists(st.integers(0, 300), max_size=4))
def test_framing_combinations(method: bytes, version: bytes, headers: list[tuple[bytes, bytes]], body: bytes,
                              cuts: list[int]) -> None:
    head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    data = method + b" /f " + version + b"\r\n" + head + b"\r\n" + body
    assert run(split(data, cuts)) == run([data])
