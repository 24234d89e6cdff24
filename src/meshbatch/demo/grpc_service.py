"""The demo consumer over gRPC (`meshbatch demo --grpc`): the same store, reached two ways on one grpc.aio server.

- `/meshbatch.demo.Events/Store`: one event per call (its message is the event's JSON), stored in its own
  transaction: what a producer calls directly, and the method the proxy's batch route matches;
- `/meshbatch.batch.v1.Batch/Process`: a batch of those calls in meshbatch's envelope, served by the consumer
  SDK's `serve_grpc` with the `handle(items)` the HTTP demo uses: one transaction per batch.

Messages are raw bytes (no generated code): the event's JSON in, `{"stored": ID}` out. grpcio comes with the
`grpc` extra and is imported only here.
"""

from __future__ import annotations

from typing import Any

import orjson

from meshbatch import extras
from meshbatch.consumer import serve_grpc
from meshbatch.demo.store import DemoStore

SERVICE, METHOD = "meshbatch.demo.Events", "Store"
STORE_PATH = f"/{SERVICE}/{METHOD}"


def decode_event(message: bytes) -> dict[str, Any]:
    """An event from its message; ValueError when it is not a JSON object (that caller's INVALID_ARGUMENT)."""
    event = orjson.loads(message)
    if not isinstance(event, dict):
        raise ValueError("the message is not a JSON object")
    return event


async def start_grpc(store: DemoStore, counts: Any, address: str, replica: str = "consumer") -> Any:
    """A started grpc.aio.Server on `address` answering both methods; `await server.stop(grace)` ends it."""
    grpc = extras.import_module("grpc", "grpc", "meshbatch demo --grpc")

    async def handle(events: list[Any]) -> list[bytes]:
        counts.batch_requests += 1
        counts.batched_items += len(events)
        await store.store(events)
        return [orjson.dumps({"stored": event.get("id"), "replica": replica}) for event in events]

    async def store_one(request: bytes, context: Any) -> bytes:
        try:
            event = decode_event(request)
        except ValueError:  # orjson.JSONDecodeError is one
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the message is not a JSON event")
        counts.single_requests += 1
        await store.store([event])
        return orjson.dumps({"stored": event.get("id"), "replica": replica})

    server = grpc.aio.server()
    single = grpc.unary_unary_rpc_method_handler(store_one)  # no (de)serializer: bytes in, bytes out
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {METHOD: single}),))
    await serve_grpc(handle, server=server, decode=decode_event)
    if server.add_insecure_port(address) == 0:
        raise OSError(f"cannot listen on {address} for gRPC")
    await server.start()
    return server


__all__ = ["METHOD", "SERVICE", "STORE_PATH", "decode_event", "start_grpc"]
