"""gRPC unary calls batched end to end: a real grpcio client over h2c -> `meshbatch run` (HTTP/2 listener, a
`codec: grpc` batch route) -> the consumer SDK's envelope app. Each caller gets its own answer or status, with
the batch's headers as trailing metadata."""

from __future__ import annotations

import asyncio

import pytest

grpc = pytest.importorskip("grpc")

from meshbatch.consumer import ItemError  # noqa: E402
from meshbatch.consumer.grpc_server import GrpcBatchApp  # noqa: E402
from testbed.asgi_server import AsgiServer  # noqa: E402
from testbed.config import cluster, config, listener, route  # noqa: E402
from testbed.grpc_batch import envelope_upstream  # noqa: E402
from testbed.grpc_protos import compiled  # noqa: E402

_, pb, pb_grpc = compiled("inventory")
STOCK = {"a": 3, "b": 0, "c": 12}


async def handle(requests):
    return [pb.Stock(sku=r.sku, count=STOCK[r.sku]) if r.sku in STOCK else ItemError(404, f"no sku {r.sku}")
            for r in requests]


@pytest.fixture
def upstream():
    received: list[int] = []
    server = AsgiServer(envelope_upstream(GrpcBatchApp(handle, decode=pb.GetRequest.FromString), received)).start()
    yield server, received
    server.stop()


def proxy(mesh, address, **batch):
    grpc_route = route("get", "inventory", {"path": "/inventory.Inventory/Get"},
                       batch={"codec": "grpc", "max_wait_ms": 300, "min_wait_ms": 150, **batch})
    return mesh.start(config([listener("main", [grpc_route])], [cluster("inventory", address)]))


async def calls(target, skus, **options):
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.InventoryStub(channel)
        pending = [stub.Get(pb.GetRequest(sku=sku), timeout=20, **options) for sku in skus]
        out = []
        for call in pending:
            try:
                out.append((await call, grpc.StatusCode.OK, "", dict(await call.trailing_metadata())))
            except grpc.aio.AioRpcError as exc:
                out.append((None, exc.code(), exc.details(), dict(exc.trailing_metadata() or ())))
        return out


def test_grpc_callers_are_batched_and_answered_each(mesh, upstream):
    server, received = upstream
    process = proxy(mesh, server.address)
    skus = ["a", "b", "zz", "c", "a", "b"]
    answers = asyncio.run(calls(process.addresses["main"], skus, metadata=[("x-tenant", "acme")]))
    for sku, (message, code, details, trailing) in zip(skus, answers, strict=True):
        if sku in STOCK:
            assert code == grpc.StatusCode.OK and message == pb.Stock(sku=sku, count=STOCK[sku])
        else:
            assert (code, details) == (grpc.StatusCode.NOT_FOUND, "no sku zz")
        assert int(trailing["x-meshbatch-batch-size"]) >= 1 and "x-meshbatch-batch-id" in trailing
    assert sum(received) == len(skus) and max(received) > 1  # batched: fewer upstream calls than callers


def test_a_batch_refused_as_a_whole_gives_every_caller_its_status(mesh):
    refusing = GrpcBatchApp(lambda items: (_ for _ in ()).throw(ItemError(503, "down for maintenance")))
    refused = AsgiServer(envelope_upstream(refusing)).start()
    try:
        process = proxy(mesh, refused.address, isolate="off")
        answers = asyncio.run(calls(process.addresses["main"], ["a", "b"]))
    finally:
        refused.stop()
    assert {(code, details) for _, code, details, _ in answers} == {(grpc.StatusCode.UNAVAILABLE,
                                                                     "down for maintenance")}


def test_an_expired_grpc_timeout_is_deadline_exceeded_before_any_upstream_call(mesh, upstream):
    server, received = upstream
    process = proxy(mesh, server.address)
    answers = asyncio.run(calls(process.addresses["main"], ["a"], metadata=[("x-meshbatch-deadline-ms", "0")]))
    assert answers[0][1] == grpc.StatusCode.DEADLINE_EXCEEDED and not received
