"""Whatever an upstream answers a gRPC batch with, each codec gives exactly one result per item and raises
nothing: hostile bytes become INTERNAL for the batch's callers, never an exception or unbounded memory."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshbatch.batching.codecs.base import ItemRequest, ItemResult
from meshbatch.batching.codecs.grpc_answers import GRPC_REPLIES
from meshbatch.batching.codecs.grpc_envelope import GrpcEnvelopeCodec
from meshbatch.grpc import wire
from meshbatch.grpc.framing import frame

pytest.importorskip("grpc_tools")
from testbed.grpc_protos import compiled

DESCRIPTORS, _pb, _grpc = compiled("inventory")

from meshbatch.batching.codecs.grpc_methods import GrpcMethodCodec  # noqa: E402

CODECS = [GrpcEnvelopeCodec(), GrpcMethodCodec.load(str(DESCRIPTORS), "/inventory.Inventory/BatchGet", "requests",
                                                    "responses", "statuses", 1 << 16)]
HEADERS = [(b"content-type", b"application/grpc")]

# Protobuf-shaped garbage: fields with the numbers the codecs read, nested, with lengths that may lie.
field = st.deferred(lambda: st.one_of(
    st.tuples(st.integers(1, 5), st.integers(0, 2**64 - 1)).map(lambda t: wire.tag(t[0], 0) + wire.varint(t[1])),
    st.tuples(st.integers(1, 5), message).map(lambda t: wire.delimited(t[0], t[1])),
    st.binary(max_size=12),
))
message = st.lists(field, max_size=6).map(b"".join)


def items(n):
    return [ItemRequest(str(i), frame(b"x"), b"POST", b"/inventory.Inventory/Get", HEADERS) for i in range(n)]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(CODECS), st.integers(1, 4), message, st.sampled_from([b"0", b"3", b"14", b"x", None]))
def test_any_answer_gives_one_result_per_item(codec, n, body, status):
    trailers = [(b"grpc-status", status)] if status is not None else []
    results = codec.decode(200, HEADERS + trailers, frame(body), items(n))
    assert len(results) == n and all(isinstance(r, ItemResult) for r in results)
    for result in results:
        answer = GRPC_REPLIES.answer(result, [])
        assert answer.status == 200  # every caller gets a readable gRPC answer


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(CODECS), st.binary(max_size=64))
def test_unframed_garbage(codec, body):
    results = codec.decode(200, [*HEADERS, (b"grpc-status", b"0")], body, items(2))
    assert len(results) == 2
