"""The consumer SDK's gRPC server driven by a real grpcio client over a real socket: the envelope in, a result
per item out, one failing item never failing its neighbours."""

import json

import pytest

grpc = pytest.importorskip("grpc")

from meshbatch.consumer import ItemError, ItemResponse, each, serve_grpc  # noqa: E402
from meshbatch.consumer.grpc_server import GrpcItem  # noqa: E402
from testbed.grpc_protos import compiled  # noqa: E402

_, pb, pb_grpc = compiled("meshbatch_batch")


async def call(handle, items, **options):
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    await serve_grpc(handle, server=server, **options)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.BatchStub(channel)
            request = pb.BatchRequest(items=[pb.Item(payload=p, method="/inv.Inv/Get", id=str(n), metadata=m)
                                             for n, (p, m) in enumerate(items, 1)])
            return await stub.Process(request, timeout=10)
    finally:
        await server.stop(None)


async def test_same_handle_function_as_http_with_per_item_statuses():
    async def handle(requests):
        out = []
        for r in requests:
            if r["sku"] == "missing":
                out.append(ItemError(404, "no such sku"))
            elif r["sku"] == "bad":
                out.append(ItemError(422, {"field": "sku"}))
            else:
                out.append(ItemResponse(200, {"sku": r["sku"], "count": 3}, {"x-cache": "hit"}))
        return out

    answer = await call(handle, [(b'{"sku": "a"}', {}), (b'{"sku": "missing"}', {}), (b'{"sku": "bad"}', {}),
                                 (b"not json", {})],
                        decode=json.loads, encode=lambda v: json.dumps(v).encode())
    ok, missing, bad, undecodable = answer.results
    assert ok.code == 0 and json.loads(ok.payload) == {"sku": "a", "count": 3} and ok.metadata["x-cache"] == "hit"
    assert (missing.code, missing.message) == (5, "no such sku")
    assert (bad.code, json.loads(bad.message)) == (3, {"field": "sku"})
    assert undecodable.code == 3 and "cannot be decoded" in undecodable.message


async def test_each_turns_an_exception_into_that_items_status_only():
    async def one(payload):
        if payload == b"boom":
            raise RuntimeError("boom")
        if payload == b"busy":
            raise ItemError(503, "try later")
        return payload.upper()

    answer = await call(each(one), [(b"a", {}), (b"boom", {}), (b"busy", {}), (b"b", {})])
    assert [(r.code, r.payload) for r in answer.results] == [(0, b"A"), (13, b""), (14, b""), (0, b"B")]


async def test_full_items_carry_method_metadata_and_id_and_protobuf_results():
    seen = []

    async def handle(items):
        seen.extend(items)
        return [pb.Item(id=item.id) for item in items]  # any protobuf message is serialized

    answer = await call(handle, [(b"x", {"x-tenant": "acme"})], full=True)
    (item,) = seen
    assert item == GrpcItem(b"x", "/inv.Inv/Get", {"x-tenant": "acme"}, "1")
    assert pb.Item.FromString(answer.results[0].payload).id == "1"


async def test_a_handler_that_raises_for_one_item_fails_only_that_item():
    calls = []

    def handle(items):
        calls.append(list(items))
        if b"poison" in items:
            raise ValueError("cannot store")
        return [i.upper() for i in items]

    answer = await call(handle, [(b"a", {}), (b"poison", {}), (b"b", {}), (b"c", {})])
    assert [(r.code, r.payload) for r in answer.results] == [(0, b"A"), (13, b""), (0, b"B"), (0, b"C")]
    assert answer.results[1].message == "item_failed: ValueError in the handler"
    assert len(calls) > 1  # isolated by calling the handler on parts


async def test_isolation_can_be_turned_off():
    answer_or_error = None
    try:
        answer_or_error = await call(lambda items: 1 / 0 if b"poison" in items else items,
                                     [(b"a", {}), (b"poison", {})], isolate=False)
    except grpc.aio.AioRpcError as exc:
        answer_or_error = exc
    assert isinstance(answer_or_error, grpc.aio.AioRpcError)
    assert answer_or_error.code() == grpc.StatusCode.INTERNAL


async def test_a_result_that_cannot_be_encoded_fails_alone():
    answer = await call(lambda items: [b"ok", object()], [(b"1", {}), (b"2", {})])
    assert answer.results[0].payload == b"ok"
    assert answer.results[1].code == 13 and "not bytes or a protobuf message" in answer.results[1].message


@pytest.mark.parametrize(("handle", "code", "words"), [
    (lambda items: [], grpc.StatusCode.INTERNAL, "got 2 items and returned 0"),
    (lambda items: 1 / 0, grpc.StatusCode.INTERNAL, "ZeroDivisionError in the batch handler"),
    (lambda items: (_ for _ in ()).throw(ItemError(503, "down")), grpc.StatusCode.UNAVAILABLE, "down"),
])
async def test_a_handler_that_fails_the_batch(handle, code, words):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(handle, [(b"1", {}), (b"2", {})])
    assert caught.value.code() == code and words in caught.value.details()


async def test_a_request_that_is_not_an_envelope():
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    await serve_grpc(lambda items: items, server=server)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            process = channel.unary_unary("/meshbatch.batch.v1.Batch/Process")
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await process(b"\x0a\x09abc", timeout=10)
    finally:
        await server.stop(None)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a BatchRequest" in caught.value.details()


async def test_serve_grpc_starts_its_own_server():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = await serve_grpc(lambda items: [b"<" + i + b">" for i in items], f"127.0.0.1:{port}")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            answer = await pb_grpc.BatchStub(channel).Process(pb.BatchRequest(items=[pb.Item(payload=b"a")]),
                                                              timeout=10)
    finally:
        await server.stop(None)
    assert answer.results[0].payload == b"<a>"
