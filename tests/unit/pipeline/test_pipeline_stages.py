"""Every pipeline stage, with good and bad input: decompress, decode, validate, filter, transform, compress."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Any

import brotli
import msgpack
import orjson
import pytest
import zstandard

from meshbatch.config.model import Step
from meshbatch.errors import BadRequest, PayloadTooLarge, ProxyError
from meshbatch.http.message import Headers, Request, Response
from meshbatch.pipeline import InvalidEvent, UnsupportedEncoding, build_pipeline
from meshbatch.pipeline.runner import Pipeline
from meshbatch.pipeline.stages.compress import CompressingSender
from meshbatch.pipeline.work import encode_events
from meshbatch.telemetry.metrics import Registry

EVENT = {"temperature": 35, "site": "eu"}


def pipeline(*steps: dict[str, Any], dead_letters: bool = True, registry: Registry | None = None) -> Pipeline:
    parsed = [Step.model_validate(s) for s in steps]
    return build_pipeline("r", parsed, dead_letters=dead_letters, metrics=registry, wall_clock=lambda: 1700000000.5)


def request(body: bytes, *headers: tuple[bytes, bytes]) -> Request:
    return Request(b"POST", b"/events", list(headers), body)


ENCODERS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
    "br": brotli.compress,
}


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
def test_decompress_each_encoding(encoding: str) -> None:
    body = orjson.dumps(EVENT)
    work = pipeline({"decompress": None}).run(request(ENCODERS[encoding](body), (b"content-encoding",
                                                                               encoding.encode())))
    assert work.body == body
    assert all(k != b"content-encoding" for k, _ in work.headers)


def test_decompress_raw_deflate_and_stacked_encodings() -> None:
    body = b'{"a": 1}'
    raw = zlib.compressobj(wbits=-15)
    deflated = raw.compress(body) + raw.flush()
    assert pipeline({"decompress": {}}).run(request(deflated, (b"content-encoding", b"deflate"))).body == body
    stacked = brotli.compress(gzip.compress(body))
    work = pipeline({"decompress": {}}).run(request(stacked, (b"content-encoding", b"gzip, br")))
    assert work.body == body


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
def test_corrupt_data_is_a_400(encoding: str) -> None:
    good = ENCODERS[encoding](b'{"a": 1}' * 50)
    corrupt = good[: len(good) // 2]  # truncated
    with pytest.raises(BadRequest) as info:
        pipeline({"decompress": {}}).run(request(corrupt, (b"content-encoding", encoding.encode())))
    assert info.value.reason == "bad_encoding"
    with pytest.raises(BadRequest):
        pipeline({"decompress": {}}).run(request(b"not compressed at all", (b"content-encoding",
                                                                             encoding.encode())))


def test_unsupported_encoding_is_a_415_and_a_bomb_a_413() -> None:
    with pytest.raises(UnsupportedEncoding) as info:
        pipeline({"decompress": {"encodings": ["gzip"]}}).run(request(b"x", (b"content-encoding", b"br")))
    assert info.value.status == 415
    bomb = gzip.compress(b"0" * 2_000_000)
    assert len(bomb) < 10_000
    for encoding, data in (("gzip", bomb), ("zstd", ENCODERS["zstd"](b"0" * 2_000_000)),
                           ("br", brotli.compress(b"0" * 2_000_000)), ("deflate", zlib.compress(b"0" * 2_000_000))):
        with pytest.raises(PayloadTooLarge) as too_large:
            pipeline({"decompress": {"max_bytes": 100_000}}).run(request(data, (b"content-encoding",
                                                                                 encoding.encode())))
        assert too_large.value.status == 413


def test_decode_formats() -> None:
    stage = {"decode": {}}
    assert pipeline(stage).run(request(b'{"a": 1}')).events == [{"a": 1}]
    ndjson = b'{"a": 1}\n\n{"a": 2}\r\n{"a": 3}\n'
    work = pipeline(stage).run(request(ndjson, (b"content-type", b"application/x-ndjson; charset=utf-8")))
    assert work.events == [{"a": 1}, {"a": 2}, {"a": 3}]
    packed = msgpack.packb({"a": [1, 2], "b": "x"})
    assert pipeline(stage).run(request(packed, (b"content-type", b"application/msgpack"))).events == [
        {"a": [1, 2], "b": "x"}]
    assert pipeline({"decode": {"split_arrays": True}}).run(request(b"[1, 2, 3]")).events == [1, 2, 3]
    assert pipeline(stage).run(request(b"[1, 2, 3]")).events == [[1, 2, 3]]
    assert pipeline({"decode": {"format": "ndjson"}}).run(request(b'{"a":1}\n{"b":2}')).events == [{"a": 1},
                                                                                                 {"b": 2}]


@pytest.mark.parametrize(("body", "headers", "reason", "detail"), [
    (b'{"a": 1', [], "invalid_json", "offset"),
    (b'{"a": 1}\n{"a": ', [(b"content-type", b"application/x-ndjson")], "invalid_json", "line 2"),
    (b"\xc1", [(b"content-type", b"application/msgpack")], "invalid_msgpack", "MessagePack"),
    (msgpack.packb({"a": b"\x00\x01"}), [(b"content-type", b"application/msgpack")], "invalid_msgpack",
     "no JSON form"),
    (msgpack.packb(1) + b"extra", [(b"content-type", b"application/msgpack")], "invalid_msgpack", "MessagePack"),
])
def test_decode_rejects_bad_input(body: bytes, headers: Headers, reason: str, detail: str) -> None:
    with pytest.raises(BadRequest) as info:
        pipeline({"decode": {}}).run(request(body, *headers))
    assert info.value.reason == reason
    assert detail in info.value.detail


def test_decode_caps_the_number_of_events() -> None:
    with pytest.raises(PayloadTooLarge):
        pipeline({"decode": {"format": "ndjson", "max_events": 2}}).run(request(b"1\n2\n3\n"))


SCHEMA = {"type": "object", "required": ["temperature"],
          "properties": {"temperature": {"type": "number"}, "site": {"enum": ["eu", "us"]}}}


def test_validate_rejects_with_the_schema_error() -> None:
    p = pipeline({"decode": {}}, {"validate": {"schema": SCHEMA}})
    assert p.run(request(b'{"temperature": 3}')).events == [{"temperature": 3}]
    with pytest.raises(InvalidEvent) as info:
        p.run(request(b'{"temperature": "hot"}'))
    assert info.value.status == 422
    assert info.value.reason == "schema_violation"
    assert "$.temperature: 'hot' is not of type 'number'" in info.value.detail
    with pytest.raises(InvalidEvent, match="event 1: \\$: 'temperature' is a required property"):
        p.run(request(b'{"temperature": 1}\n{"site": "eu"}', (b"content-type", b"application/x-ndjson")))


def test_validate_can_route_to_dead_letters(tmp_path: Path) -> None:
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(SCHEMA))
    registry = Registry()
    p = pipeline({"decode": {"format": "ndjson"}}, {"validate": {"schema": str(schema_file), "on_invalid":
                                                                "dead_letter"}}, registry=registry)
    work = p.run(request(b'{"temperature": 1}\n{"temperature": 2, "site": "mars"}\n{"temperature": 3}'))
    assert work.events == [{"temperature": 1}, {"temperature": 3}]
    assert len(work.dead) == 1
    assert work.dead[0][0] == {"temperature": 2, "site": "mars"}
    assert work.dead[0][1].startswith("schema_violation: $.site:")
    assert p.counts()["validate"] == {"in": 3, "out": 2, "dropped": 0, "failed": 1}


def test_filter_keeps_drops_and_counts() -> None:
    registry = Registry()
    p = pipeline({"decode": {"split_arrays": True}}, {"filter": 'temperature > 30 and site == "eu"'},
                 registry=registry)
    body = orjson.dumps([EVENT, {"temperature": 20, "site": "eu"}, {"temperature": "x", "site": "eu"},
                         {"temperature": 31, "site": "us"}])
    work = p.run(request(body))
    assert work.events == [EVENT]
    assert work.dropped == 3
    assert p.counts()["filter"] == {"in": 4, "out": 1, "dropped": 3, "failed": 0}
    text = registry.render().decode()
    assert 'meshbatch_pipeline_events_total{result="dropped",route="r",stage="filter"} 3.0' in text


def test_filter_errors_drop_or_reject() -> None:
    body = b'[{"t": "x"}, {"t": 2}]'
    dropping = pipeline({"decode": {"split_arrays": True}}, {"filter": "t * 2 > 3"})
    work = dropping.run(request(body))
    assert work.events == [{"t": 2}]
    assert work.failed == 1
    rejecting = pipeline({"decode": {"split_arrays": True}}, {"filter": {"expr": "t * 2 > 3", "on_error": "reject"}})
    with pytest.raises(InvalidEvent, match="needs two numbers"):
        rejecting.run(request(body))
    assert rejecting.counts()["filter"]["failed"] == 1


def test_transform_order_and_stamp() -> None:
    p = pipeline({"decode": {}}, {"transform": {
        "rename": {"temp": "reading.temperature", "loc": "site"},
        "project": ["reading", "site", "keep.me"],
        "drop": ["reading.raw"],
        "add": {"source": "sensors", "meta": {"v": 1}},
        "stamp": "received_at",
    }})
    event = {"temp": 31.5, "loc": "eu", "reading": {"raw": "0x1f"}, "keep": {"me": 1, "not": 2}, "noise": True}
    work = p.run(request(orjson.dumps(event)))
    assert work.events == [{"reading": {"temperature": 31.5}, "site": "eu", "keep": {"me": 1}, "source": "sensors",
                            "meta": {"v": 1}, "received_at": "2023-11-14T22:13:20.500Z"}]
    unix = pipeline({"decode": {}}, {"transform": {"stamp": "at", "stamp_format": "unix_ms"}})
    assert unix.run(request(b"{}")).events == [{"at": 1700000000500}]
    with pytest.raises(InvalidEvent, match="event 0 is a JSON list"):
        p.run(request(b"[1]"))


def test_a_refusing_stage_counts_a_failure() -> None:
    p = pipeline({"decompress": {}}, {"decode": {}})
    with pytest.raises(ProxyError):
        p.run(request(b"{", ))
    assert p.counts() == {"decompress": {"in": 1, "out": 1, "dropped": 0, "failed": 0},
                          "decode": {"in": 1, "out": 0, "dropped": 0, "failed": 1}}


async def test_compress_wraps_the_batch_sender_and_falls_back_on_415() -> None:
    sent: list[tuple[Headers, bytes]] = []
    statuses = [200, 415, 200, 200]

    async def send(method: bytes, path: bytes, headers: Headers, body: bytes, timeout: float,
                   key: tuple[bytes, ...]) -> Response:
        sent.append((headers, body))
        return Response(statuses[len(sent) - 1])

    p = pipeline({"compress": {"encoding": "gzip", "min_bytes": 10}})
    assert p.compress is not None and not p.stages
    sender = CompressingSender(send, p.compress)
    big = b"[" + b",".join([b'{"a": 1}'] * 100) + b"]"
    assert (await sender(b"POST", b"/b", [], big, 1.0, ())).status == 200
    assert (b"content-encoding", b"gzip") in sent[0][0] and gzip.decompress(sent[0][1]) == big
    assert (await sender(b"POST", b"/b", [], big, 1.0, ())).status == 200  # 415, then plain
    assert sent[2] == ([], big)
    await sender(b"POST", b"/b", [], big, 1.0, ())
    assert sent[3] == ([], big)  # learned: this upstream takes it plain
    assert sender.batches == 2 and sender.bytes_out < sender.bytes_in

    z = CompressingSender(send, Step.model_validate({"compress": {"encoding": "zstd", "min_bytes": 0}}).compress)
    sent.clear()
    statuses[:] = [200]
    await z(b"POST", b"/b", [], b"tiny", 1.0, ())
    assert zstandard.ZstdDecompressor().decompress(sent[0][1]) == b"tiny"


def test_events_are_encoded_together_and_one_without_a_json_form_is_a_clear_400() -> None:
    events = [{"a": 1, "b": [1.5, "x"]}, [None, True], "text"]
    assert encode_events(events) == [orjson.dumps(e) for e in events]
    with pytest.raises(BadRequest) as info:  # msgpack's bytes have no JSON form
        encode_events([{"a": 1}, {"raw": b"\x00\x01"}])
    assert info.value.reason == "invalid_event" and "no JSON form" in info.value.detail
