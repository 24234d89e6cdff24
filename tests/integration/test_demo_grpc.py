"""`meshbatch demo --grpc`, briefly: the demo's mesh (two consumer replicas serving gRPC, `meshbatch run` with its
gRPC batch route) and its grpcio producer, direct then through the proxy; every acknowledged event is stored
once, the proxied calls arrive as batches, and a message that is not an event is refused for its caller alone."""

from __future__ import annotations

import asyncio

import pytest

grpc = pytest.importorskip("grpc")

from meshbatch.demo.cli import Mesh, _verify, start_mesh  # noqa: E402
from meshbatch.demo.grpc_service import STORE_PATH  # noqa: E402
from meshbatch.demo.producer_grpc import produce_grpc  # noqa: E402
from testbed.upstream import refused_port  # noqa: E402


@pytest.fixture(scope="module")
def grpc_mesh(tmp_path_factory: pytest.TempPathFactory):  # one mesh (~2 s to start) for the module's tests
    mesh = start_mesh(None, refused_port(), tmp_path_factory.mktemp("demo-grpc"), grpc=True)
    yield mesh
    mesh.stop()


async def _calls(target: str, messages: list[bytes]) -> list[tuple[grpc.StatusCode, str]]:
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(STORE_PATH)
        out = []
        for outcome in await asyncio.gather(*(call(m, timeout=5) for m in messages), return_exceptions=True):
            if isinstance(outcome, grpc.aio.AioRpcError):
                out.append((outcome.code(), outcome.details() or ""))
            else:
                out.append((grpc.StatusCode.OK, outcome.decode()))
        return out


def test_grpc_demo_stores_every_acknowledged_event_once(grpc_mesh: Mesh) -> None:
    async def load():
        direct = await produce_grpc("direct", "grpc-direct", grpc_mesh.grpc_consumers, 0.3, 8)
        batched = await produce_grpc("batched", "grpc-batched", [("127.0.0.1", grpc_mesh.port)], 0.3, 16)
        return direct, batched

    direct, batched = asyncio.run(load())
    assert direct.ok > 0 and batched.ok > 0 and not direct.failed and not batched.failed
    assert asyncio.run(_verify(grpc_mesh.database, [direct, batched])) == [(direct.ok, direct.ok),
                                                                           (batched.ok, batched.ok)]
    stats = grpc_mesh.consumer_stats()
    assert stats["single_requests"] == direct.ok  # direct: one call per event
    assert stats["batched_items"] == batched.ok and 1 <= stats["batch_requests"] <= batched.ok
    assert len(batched.batch_sizes) == batched.ok and min(batched.batch_sizes) >= 1  # the batch's trailing metadata


def test_a_message_that_is_not_an_event_fails_its_caller_alone(grpc_mesh: Mesh) -> None:
    messages = [b'{"id": "x1", "run": "hostile"}', b"\xff not json", b"[1, 2]", b'{"id": "x2", "run": "hostile"}']
    for target in (f"127.0.0.1:{grpc_mesh.grpc_consumers[0][1]}", f"127.0.0.1:{grpc_mesh.port}"):
        answers = asyncio.run(_calls(target, messages))
        assert [code for code, _ in answers] == [grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT,
                                                 grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OK], answers
        assert '"stored":"x1"' in answers[0][1]
