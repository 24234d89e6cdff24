"""meshbatch's envelope written and read by hand, proved against protobuf compiled from the shipped .proto, and
the wire reader against hostile bytes (hypothesis: it returns or raises MalformedMessage, nothing else)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshbatch.grpc import envelope, wire
from meshbatch.grpc.wire import MalformedMessage
from testbed.grpc_protos import compiled

pytest.importorskip("grpc_tools")
_, pb, _grpc = compiled("meshbatch_batch")

texts = st.text(max_size=20)
metadata = st.lists(st.tuples(st.text(min_size=1, max_size=8), texts), max_size=3, unique_by=lambda kv: kv[0])
items = st.builds(envelope.EnvelopeItem, st.one_of(st.binary(max_size=40), st.binary(min_size=100, max_size=300)),
                  texts, metadata, texts)
results = st.builds(envelope.EnvelopeResult, st.integers(-(2**31), 2**31 - 1), texts, st.binary(max_size=40),
                    metadata)


@settings(max_examples=150, deadline=None)
@given(st.lists(items, max_size=5))
def test_requests_are_the_bytes_protobuf_writes(found):
    expected = pb.BatchRequest(items=[pb.Item(payload=i.payload, method=i.method, metadata=dict(i.metadata), id=i.id)
                                      for i in found])
    ours = envelope.encode_request(found)
    assert pb.BatchRequest.FromString(ours) == expected
    if all(len(i.metadata) <= 1 for i in found):  # a map's entries have no fixed order beyond one
        assert ours == expected.SerializeToString(deterministic=True)
    back = envelope.decode_request(expected.SerializeToString())
    assert [(i.payload, i.method, sorted(i.metadata), i.id) for i in back] == \
        [(i.payload, i.method, sorted(i.metadata), i.id) for i in found]


@settings(max_examples=150, deadline=None)
@given(st.lists(results, max_size=5))
def test_responses_are_the_bytes_protobuf_writes(found):
    expected = pb.BatchResponse(results=[pb.Result(code=r.code, message=r.message, payload=r.payload,
                                                   metadata=dict(r.metadata)) for r in found])
    ours = envelope.encode_response(found)
    assert pb.BatchResponse.FromString(ours) == expected
    if all(len(r.metadata) <= 1 for r in found):
        assert ours == expected.SerializeToString(deterministic=True)
    back = envelope.decode_response(expected.SerializeToString())
    assert [(r.code, r.message, r.payload, sorted(r.metadata)) for r in back] == \
        [(r.code, r.message, r.payload, sorted(r.metadata)) for r in found]


def test_long_fields_take_longer_lengths():
    for size in (127, 128, 16383, 16384, 70000):
        item = envelope.EnvelopeItem(b"x" * size, "/a.B/C", [("k", "v" * size)], "1")
        expected = pb.BatchRequest(items=[pb.Item(payload=item.payload, method=item.method, metadata={"k": "v" * size},
                                                  id="1")])
        assert envelope.encode_request([item]) == expected.SerializeToString(deterministic=True)
        result = envelope.EnvelopeResult(payload=b"y" * size)
        assert envelope.decode_response(envelope.encode_response([result]))[0].payload == result.payload


def test_unknown_fields_are_skipped():
    result = pb.Result(code=5, message="gone").SerializeToString() + wire.tag(9, wire.VARINT) + wire.varint(7) \
        + wire.delimited(10, b"future") + wire.tag(11, wire.FIXED32) + b"abcd" + wire.tag(12, wire.FIXED64) + b"x" * 8
    (found,) = envelope.decode_response(wire.delimited(1, result))
    assert (found.code, found.message) == (5, "gone")


@pytest.mark.parametrize(("data", "words"), [
    (b"\x0a", "truncated"),                                   # results: a key, no length
    (b"\x0a\x05abc", "claims 5 bytes"),                        # a length past the end
    (b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "longer than ten bytes"),
    (b"\x0a\xff\xff\xff\xff\x0f", "claims"),                   # ~4 GB claimed by 6 bytes
    (b"\x08\x01", "wire type 0, expected 2"),                  # results as a varint
    (b"\x0b", "group"),                                        # wire type 3
    (b"\x0e", "wire type 6"),
    (b"\x00\x01", "field number 0"),
    (wire.delimited(1, b"\x12\x02\xff\xfe"), "not UTF-8"),     # a Result whose message is not text
    (wire.delimited(1, b"\x0a\x01x"), r"expected 0 \(varint\)"),  # a Result whose code is bytes
    (wire.delimited(1, b"\x1a\x09abc"), "claims 9 bytes"),     # nested: a payload past its Result's end
    (wire.delimited(1, wire.delimited(4, b"\x0a\x80")), "truncated"),  # nested twice: a metadata entry
])
def test_hostile_answers_are_malformed_messages(data, words):
    with pytest.raises(MalformedMessage, match=words):
        envelope.decode_response(data)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_the_reader_never_raises_anything_else(data):
    try:
        envelope.decode_response(data)
        envelope.decode_request(data)
        list(wire.fields(data))
    except MalformedMessage:
        pass


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_varints_round_trip(value):
    assert wire.read_varint(wire.varint(value), 0) == (value, len(wire.varint(value)))


def test_negative_int32_takes_ten_bytes_as_protobuf_writes():
    assert wire.varint(-1) == b"\xff" * 9 + b"\x01"
    assert wire.as_int32(1, wire.VARINT, wire.read_varint(wire.varint(-5), 0)[0]) == -5


def test_the_envelope_method_is_the_configs_default():
    from meshbatch.config.model import ENVELOPE_METHOD
    from meshbatch.consumer.grpc_server import METHOD, SERVICE

    assert envelope.METHOD == ENVELOPE_METHOD == f"/{SERVICE}/{METHOD}"
    assert _grpc.BatchServicer.Process  # the compiled .proto names the same service and method
    assert pb.DESCRIPTOR.services_by_name["Batch"].methods_by_name["Process"].full_name == \
        ENVELOPE_METHOD.strip("/").replace("/", ".")
