"""Fuzzing the batch codecs (hypothesis): encoding any valid items and decoding a faithful answer gives every caller
its own result, as the exact bytes the upstream wrote (numbers beyond 64 bits, `1.0`, `-0.0`, escapes); decoding
anything an upstream may send (any status, any bytes) gives exactly one result per caller with a real status,
and never raises; checking any item body never raises."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshbatch.batching.codecs import CODECS, ItemRequest

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
JSON = st.recursive(st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)
NAMES = [name for name in CODECS.names() if name != "grpc"]  # the JSON codecs (grpc: test_grpc_codec_properties)
SEED_ANSWERS = [b"", b"[]", b"[1]", b"{}", b'{"responses": []}', b'{"responses": [{"id": "1"}]}', b"null\n",
                b'{"responses": [{"id": "1", "status": "abc"}]}', b"\xff\xfe", b'[1, 2, 3]', b"1\n2\n"]


# JSON text as an upstream may write it: numbers of any size and spelling, strings escaped or not, spaces.
_SPACE = st.sampled_from(["", " ", "  "])
_NUMBER = st.one_of(
    st.integers(-(2**200), 2**200).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["1.0", "-0.0", "0.0", "1e400", "-1E-400", "1.50", "18446744073709551616", "-9223372036854775809"]))
_STRING = st.tuples(st.text(max_size=8), st.booleans()).map(lambda t: json.dumps(t[0], ensure_ascii=t[1]))
JSON_TEXT = st.recursive(
    _NUMBER | _STRING | st.sampled_from(["true", "false", "null"]),
    lambda inner: st.lists(st.tuples(_SPACE, inner), max_size=3).map(
        lambda parts: "[" + ",".join(space + text for space, text in parts) + "]")
    | st.lists(st.tuples(_STRING, inner), max_size=3).map(
        lambda pairs: "{" + ", ".join(f"{key}: {text}" for key, text in pairs) + "}"),
    max_leaves=8)


def items(bodies: list[bytes]) -> list[ItemRequest]:
    return [ItemRequest(str(n), body, b"POST", b"/i", [(b"content-type", b"application/json")])
            for n, body in enumerate(bodies, 1)]


def faithful_answer(name: str, values: list[object]) -> bytes:
    if name == "json-array":
        return orjson.dumps(values)
    if name == "ndjson":
        return b"".join(orjson.dumps(v) + b"\n" for v in values)
    return orjson.dumps({"responses": [{"id": str(n), "status": 200, "body": v} for n, v in enumerate(values, 1)]})


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("answer", SEED_ANSWERS)
def test_seed_answers(name: str, answer: bytes) -> None:
    codec = CODECS.get(name)()
    results = codec.decode(200, [], answer, items([b"1", b"2"]))
    assert len(results) == 2 and all(100 <= r.status <= 599 for r in results)


@FUZZ
@given(st.sampled_from(NAMES), st.lists(JSON, min_size=1, max_size=8))
def test_round_trip(name: str, values: list[object]) -> None:
    codec = CODECS.get(name)()
    batch = items([orjson.dumps(v) for v in values])
    for item in batch:
        assert codec.check_item(item) is None
    codec.encode(batch)
    results = codec.decode(200, [], faithful_answer(name, values), batch)
    # an envelope response whose body is null has no body
    assert [orjson.loads(r.body) if r.body or name != "envelope" else None for r in results] == values


@FUZZ
@given(st.sampled_from(NAMES), st.lists(JSON_TEXT, min_size=1, max_size=6))
def test_results_are_the_exact_bytes_of_the_answer(name: str, texts: list[str]) -> None:
    codec = CODECS.get(name)()
    raw = [text.encode() for text in texts]
    batch = items([b"0"] * len(raw))
    if name == "json-array":
        answer = b"[" + b" , ".join(raw) + b"]"
    elif name == "ndjson":
        answer = b"\n".join(raw) + b"\n"
    else:
        answer = b'{"responses": [' + b",".join(
            b'{"id": "%d", "status": 200, "body": %s}' % (n, body) for n, body in enumerate(raw, 1)) + b"]}"
    results = codec.decode(200, [], answer, batch)
    assert [r.body for r in results] == [b"" if name == "envelope" and body == b"null" else body for body in raw]


@FUZZ
@given(st.sampled_from(NAMES), st.lists(JSON_TEXT, min_size=1, max_size=6))
def test_item_bodies_travel_unchanged(name: str, texts: list[str]) -> None:
    codec = CODECS.get(name)()
    batch = items([text.encode() for text in texts])
    bad = [item for item in batch if codec.check_item(item) is not None]
    assert all(b"1e400" in item.body for item in bad)  # admission refuses a number that is infinite as a double
    encoded = codec.encode(batch)
    assert all(item.body in encoded for item in batch)


@FUZZ
@given(st.sampled_from(NAMES), st.integers(100, 599), st.binary(max_size=300), st.integers(1, 5))
def test_any_answer_gives_one_result_per_caller(name: str, status: int, body: bytes, n: int) -> None:
    codec = CODECS.get(name)()
    results = codec.decode(status, [], body, items([b"{}"] * n))
    assert len(results) == n and all(100 <= r.status <= 599 for r in results)


@FUZZ
@given(st.sampled_from(NAMES), st.binary(max_size=200))
def test_any_item_body_is_checked_without_raising(name: str, body: bytes) -> None:
    result = CODECS.get(name)().check_item(items([body])[0])
    assert result is None or isinstance(result, str)
