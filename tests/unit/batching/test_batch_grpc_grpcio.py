"""Both gRPC batching modes against real grpcio servers: the batcher's batch call made by a grpcio client (the
proxy's HTTP/2 client stands in the full stack), answered by the consumer SDK's gRPC server (envelope) or by a
grpcio servicer of the service's own BatchGet (descriptors)."""

import asyncio

import pytest

grpc = pytest.importorskip("grpc")

from google.rpc import status_pb2  # noqa: E402

from meshbatch.batching.handler import BatchHandler  # noqa: E402
from meshbatch.config.model import Batch  # noqa: E402
from meshbatch.consumer import ItemError, serve_grpc  # noqa: E402
from meshbatch.telemetry.metrics import Registry  # noqa: E402
from testbed.grpc_batch import Answer, GrpcioSender, grpc_call  # noqa: E402
from testbed.grpc_protos import compiled  # noqa: E402

DESCRIPTORS, pb, pb_grpc = compiled("inventory")
STOCK = {"a": 3, "b": 0}


async def serving(add):
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    await add(server)
    await server.start()
    return server, f"127.0.0.1:{port}"


async def run(config, server_setup, skus, metadata=()):
    server, target = await serving(server_setup)
    sender = GrpcioSender(target)
    handler = BatchHandler("inv", Batch(max_items=64, **config), sender, timeout=10.0, metrics=Registry())
    try:
        calls = [handler(grpc_call(pb.GetRequest(sku=sku).SerializeToString(), list(metadata))) for sku in skus]
        return [Answer(r) for r in await asyncio.gather(*calls)], sender
    finally:
        await handler.drain(1.0)
        await sender.close()
        await server.stop(None)


async def test_envelope_mode_against_the_sdk_server():
    async def handle(requests):
        return [ItemError(404, f"no sku {r.sku}") if r.sku not in STOCK else pb.Stock(sku=r.sku, count=STOCK[r.sku])
                for r in requests]

    def add(server):
        return serve_grpc(handle, server=server, decode=pb.GetRequest.FromString)

    answers, sender = await run({"codec": "grpc"}, add, ["a", "zz", "b"], [(b"x-tenant", b"acme")])
    ok, missing, zero = answers
    assert pb.Stock.FromString(ok.message) == pb.Stock(sku="a", count=3) and ok.status == 0
    assert (missing.status, missing.text) == (5, "no sku zz")
    assert pb.Stock.FromString(zero.message).count == 0
    assert {a.metadata[b"x-meshbatch-batch-size"] for a in answers} == {b"3"}
    assert [path for path, _ in sender.calls] == [b"/meshbatch.batch.v1.Batch/Process"]


class Inventory(pb_grpc.InventoryServicer):
    def __init__(self):
        self.batches = []

    async def BatchGet(self, request, context):
        self.batches.append([r.sku for r in request.requests])
        if any(r.sku == "poison" for r in request.requests):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "poison sku")
        responses, statuses = [], []
        for r in request.requests:
            if r.sku in STOCK:
                responses.append(pb.Stock(sku=r.sku, count=STOCK[r.sku]))
                statuses.append(status_pb2.Status())
            else:
                statuses.append(status_pb2.Status(code=5, message=f"no sku {r.sku}"))
        return pb.BatchGetResponse(responses=responses, statuses=statuses)


GRPC = {"descriptor_set": str(DESCRIPTORS), "batch_method": "/inventory.Inventory/BatchGet",
        "items_field": "requests", "results_field": "responses", "statuses_field": "statuses"}


async def test_descriptor_mode_against_the_services_batch_method():
    service = Inventory()

    async def add(server):
        pb_grpc.add_InventoryServicer_to_server(service, server)

    answers, _sender = await run({"codec": "grpc", "grpc": GRPC}, add, ["b", "nope", "a"])
    b, nope, a = answers
    assert pb.Stock.FromString(a.message).count == 3 and pb.Stock.FromString(b.message).count == 0
    assert (nope.status, nope.text) == (5, "no sku nope")
    assert service.batches == [["b", "nope", "a"]]


async def test_a_batch_refused_with_invalid_argument_isolates_the_poison_call():
    service = Inventory()

    async def add(server):
        pb_grpc.add_InventoryServicer_to_server(service, server)

    answers, _sender = await run({"codec": "grpc", "grpc": GRPC}, add, ["a", "poison", "b", "a"])
    assert [a.status for a in answers] == [0, 3, 0, 0]
    assert answers[1].text == "poison sku" and answers[1].metadata[b"x-meshbatch-isolated"] == b"true"
    assert service.batches[0] == ["a", "poison", "b", "a"] and len(service.batches) > 1
