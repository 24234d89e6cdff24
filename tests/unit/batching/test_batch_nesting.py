"""The nesting bound of JSON item bodies: the pure check, and admission refusing a deep body at the door."""

from __future__ import annotations

import json
import random

import orjson
import pytest
from batching_support import make_handler, request, settle

from meshbatch.batching.codecs import CODECS, ItemRequest
from meshbatch.batching.codecs.nesting import MAX_DEPTH, nesting_exceeds
from meshbatch.telemetry.metrics import Registry


def nested(depth: int, leaf: object = 1) -> object:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def depth_of(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


@pytest.mark.parametrize(("body", "depth"), [
    (b"1", 0), (b'"[[[["', 0), (b"[]", 1), (b'{"a": [1, {"b": []}]}', 4),
    (b"[" * 64 + b"]" * 64, 64), (b"[" * 65 + b"]" * 65, 65), (b"[" * 1000 + b"]" * 1000, 1000),
])
def test_depth_is_counted_on_brackets_outside_strings(body, depth):
    assert nesting_exceeds(body) == (depth > MAX_DEPTH)
    assert nesting_exceeds(body, depth) is False
    if depth:
        assert nesting_exceeds(body, depth - 1) is True


def test_brackets_and_escaped_quotes_inside_strings_do_not_count():
    tricky = ["[[[[{{{{", 'a\\"[[[', "\\", '\\\\"', "]]]]}}}}"]
    body = json.dumps([tricky * 20, {"[": tricky}]).encode()
    assert not nesting_exceeds(body, 3) and nesting_exceeds(body, 2)


def test_random_documents_agree_with_a_recursive_count():
    rng = random.Random(7)
    texts = ["[", "]", "{", "}", '\\"', "\\\\", "x", ""]

    def build(level: int) -> object:  # mostly one child per container: deep, never wide
        r = rng.random()
        if level > 80 or r < 0.08:
            return rng.choice(texts) * rng.randint(0, 3) if r < 0.15 else rng.randint(-5, 5)
        width = 2 if rng.random() < 0.1 else 1
        if r < 0.55:
            return [build(level + 1) for _ in range(width)] + [rng.choice(texts)]
        return {rng.choice(texts) + str(n): build(level + 1) for n in range(width)}

    for _ in range(500):
        value = build(0)
        body = json.dumps(value).encode()
        for limit in (0, 1, 3, 8):
            assert nesting_exceeds(body, limit) == (depth_of(value) > limit), body


@pytest.mark.parametrize("name", ["json-array", "ndjson", "envelope"])
def test_every_codec_refuses_a_deep_body_with_its_own_reason(name):
    codec = CODECS.get(name)()
    ok = ItemRequest("1", orjson.dumps(nested(MAX_DEPTH)), headers=[(b"content-type", b"application/json")])
    deep = ItemRequest("1", orjson.dumps(nested(MAX_DEPTH + 1)), headers=[(b"content-type", b"application/json")])
    assert codec.check_item(ok) is None
    problem = codec.check_item(deep)
    assert problem is not None and getattr(problem, "reason", "") == "json_too_deep"
    text = ItemRequest("1", b"[" * 200, headers=[(b"content-type", b"text/plain")])  # not JSON: not nested
    if name == "envelope":
        assert codec.check_item(text) is None


async def test_admission_refuses_a_1000_deep_array_with_400_json_too_deep_and_counts_it():
    registry = Registry()
    handler, upstream, _ = make_handler(registry=registry)
    response = await handler(request(raw=b"[" * 1000 + b"]" * 1000))
    assert response.status == 400 and response.reason == "json_too_deep"
    payload = orjson.loads(response.body)
    assert payload["reason"] == "json_too_deep" and "64 levels" in payload["detail"]
    await settle()
    assert upstream.calls == []
    assert handler.summary()["rejections"] == {"json_too_deep": 1}
    assert 'meshbatch_batch_rejections_total{reason="json_too_deep",route="orders"} 1.0' in registry.render().decode()
