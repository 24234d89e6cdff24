"""meshbatch's batch envelope (meshbatch_batch.proto) on the wire, written and read by hand: the hot path needs
no protobuf import, and the bytes are the ones protobuf writes (tests/unit/grpc/test_envelope_compat.py proves
it against the compiled .proto).

    BatchRequest  {repeated Item items = 1}        Item   {bytes payload = 1; string method = 2;
                                                           map<string, string> metadata = 3; string id = 4}
    BatchResponse {repeated Result results = 1}    Result {int32 code = 1; string message = 2; bytes payload = 3;
                                                           map<string, string> metadata = 4}

Readers are strict where a mistake would misroute an answer (a field with the wrong wire type, a truncated
message: MalformedMessage) and lenient where protobuf is (unknown fields skipped, the last of a repeated scalar wins).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from meshbatch.grpc.wire import LEN, MalformedMessage, as_bytes, as_int32, as_text, delimited, fields, tag, varint

METHOD = "/meshbatch.batch.v1.Batch/Process"  # the same as config.model.ENVELOPE_METHOD (a test holds them equal)
Metadata = list[tuple[str, str]]


@dataclass(slots=True)
class EnvelopeItem:
    payload: bytes
    method: str = ""
    metadata: Metadata = field(default_factory=list)
    id: str = ""


@dataclass(slots=True)
class EnvelopeResult:
    code: int = 0
    message: str = ""
    payload: bytes = b""
    metadata: Metadata = field(default_factory=list)


def _text(number: int, text: str) -> bytes:
    return delimited(number, text.encode("utf-8")) if text else b""


def _metadata(number: int, metadata: Iterable[tuple[str, str]]) -> bytes:
    # A map entry always has its key and value, empty or not, as protobuf writes it.
    return b"".join(delimited(number, delimited(1, key.encode("utf-8")) + delimited(2, value.encode("utf-8")))
                    for key, value in metadata)


_KEYS = [bytes(((number << 3) | LEN,)) for number in range(5)]  # fields 1-4: one-byte keys
_SIZES = [bytes((size,)) for size in range(0x80)]  # one-byte lengths


def _field(number: int, data: bytes) -> bytes:
    """A length-delimited field of the envelope, its key and a length under 16 KiB written inline (the hot path)."""
    size = len(data)
    if size < 0x80:
        return _KEYS[number] + _SIZES[size] + data
    if size < 0x4000:
        return _KEYS[number] + bytes(((size & 0x7F) | 0x80, size >> 7)) + data
    return delimited(number, data)


def method_field(method: bytes) -> bytes:
    """An Item's `method` field (UTF-8 bytes), for a caller that writes it once per method."""
    return _field(2, method) if method else b""


def encode_raw_item(payload: bytes, method: bytes, metadata: Iterable[tuple[bytes, bytes]], item_id: bytes,
                    method_bytes: bytes | None = None) -> bytes:
    """One Item from bytes that are already UTF-8 where the .proto says string (the codec's hot path);
    `method_bytes`: the method's field as `method_field` wrote it, when the caller keeps it."""
    body = (_field(1, payload) if payload else b"") + (method_field(method) if method_bytes is None else method_bytes)
    for key, value in metadata:
        body += _field(3, _field(1, key) + _field(2, value))
    if item_id:
        body += _field(4, item_id)
    return _field(1, body)


def encode_item(item: EnvelopeItem) -> bytes:
    return encode_raw_item(item.payload, item.method.encode("utf-8"),
                           [(key.encode("utf-8"), value.encode("utf-8")) for key, value in item.metadata],
                           item.id.encode("utf-8"))


def encode_request(items: Iterable[EnvelopeItem]) -> bytes:
    return b"".join(encode_item(item) for item in items)


def encode_response(results: Iterable[EnvelopeResult]) -> bytes:
    out = []
    for result in results:
        body = (tag(1, 0) + varint(result.code) if result.code else b"") + _text(2, result.message) \
            + (delimited(3, result.payload) if result.payload else b"") + _metadata(4, result.metadata)
        out.append(delimited(1, body))
    return b"".join(out)


def _entry(data: bytes) -> tuple[str, str]:
    key = value = ""
    for number, wire_type, raw in fields(data):
        if number == 1:
            key = as_text(number, wire_type, raw)
        elif number == 2:
            value = as_text(number, wire_type, raw)
    return key, value


def _repeated(data: bytes, number: int, what: str) -> list[bytes]:
    out = []
    for found, wire_type, raw in fields(data):
        if found == number:
            if wire_type != LEN:
                raise MalformedMessage(f"{what} (field {number}) has wire type {wire_type}, expected 2")
            out.append(as_bytes(found, wire_type, raw))
    return out


def decode_result(data: bytes) -> EnvelopeResult:
    size = len(data)
    # The usual result, a payload under 128 bytes and nothing else: read without the field walker.
    if size >= 2 and data[0] == 0x1A and data[1] == size - 2 and size - 2 < 0x80:
        return EnvelopeResult(payload=data[2:])
    result = EnvelopeResult()
    for number, wire_type, raw in fields(data):
        if number == 1:
            result.code = as_int32(number, wire_type, raw)
        elif number == 2:
            result.message = as_text(number, wire_type, raw)
        elif number == 3:
            result.payload = as_bytes(number, wire_type, raw)
        elif number == 4:
            result.metadata.append(_entry(as_bytes(number, wire_type, raw)))
    return result


def decode_item(data: bytes) -> EnvelopeItem:
    item = EnvelopeItem(b"")
    for number, wire_type, raw in fields(data):
        if number == 1:
            item.payload = as_bytes(number, wire_type, raw)
        elif number == 2:
            item.method = as_text(number, wire_type, raw)
        elif number == 3:
            item.metadata.append(_entry(as_bytes(number, wire_type, raw)))
        elif number == 4:
            item.id = as_text(number, wire_type, raw)
    return item


def decode_response(data: bytes) -> list[EnvelopeResult]:
    """The results of a BatchResponse; MalformedMessage for malformed bytes (nested ones included)."""
    return [decode_result(raw) for raw in _repeated(data, 1, "results")]


def decode_request(data: bytes) -> list[EnvelopeItem]:
    return [decode_item(raw) for raw in _repeated(data, 1, "items")]



__all__ = ["METHOD", "EnvelopeItem", "EnvelopeResult", "Metadata", "decode_item", "decode_request",
           "decode_response", "decode_result", "encode_item", "encode_raw_item", "encode_request", "encode_response",
           "method_field"]
