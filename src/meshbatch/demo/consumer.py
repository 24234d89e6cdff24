"""The demo consumer: a service that stores events, one request at a time or in batches.

`POST /events` stores one event in its own transaction; `POST /events/batch` (written with the consumer SDK,
`meshbatch.consumer`) stores a whole batch in one transaction; `GET /stats` counts what it received (`GET /`
says which replica answered, with the same counts). With `--grpc-port`, the same store is served over gRPC too
(demo/grpc_service.py), counted in the same `/stats`. Run one replica per process:
`python -m meshbatch.demo.consumer --port 9101 --database sqlite:///demo.db`.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from meshbatch.consumer import asgi_app
from meshbatch.demo.store import DemoStore, open_store

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass
class Counts:
    single_requests: int = 0
    batch_requests: int = 0
    batched_items: int = 0


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _reply(send: Send, status: int, payload: Any) -> None:
    body = orjson.dumps(payload)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def build_app(store: DemoStore, counts: Counts, replica: str = "consumer",
              grpc_address: str | None = None) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def handle(items: list[Any]) -> list[Any]:
        counts.batch_requests += 1
        counts.batched_items += len(items)
        await store.store(items)
        return [{"stored": item.get("id"), "replica": replica} for item in items]

    batch_app = asgi_app(handle, codec="json-array", path="/events/batch")
    grpc_servers: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await store.open()
                    if grpc_address is not None:  # `meshbatch demo --grpc`: the same store over gRPC too
                        from meshbatch.demo.grpc_service import start_grpc

                        grpc_servers.append(await start_grpc(store, counts, grpc_address, replica))
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    for server in grpc_servers:
                        await server.stop(2.0)
                    await store.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path, method = scope.get("path"), scope.get("method")
        if path == "/events" and method == "POST":
            try:
                event = orjson.loads(await _read_body(receive))
            except orjson.JSONDecodeError:
                await _reply(send, 400, {"error": "bad request", "reason": "body is not JSON"})
                return
            counts.single_requests += 1
            await store.store([event])
            await _reply(send, 201, {"stored": event.get("id"), "replica": replica})
        elif path == "/stats":
            await _reply(send, 200, asdict(counts))
        elif path == "/" and method == "GET":  # who answered, and what it received (the Kubernetes walk-through)
            await _reply(send, 200, {"service": "consumer", "replica": replica, **asdict(counts)})
        elif path == "/health":
            await _reply(send, 200, {"status": "ok"})
        else:
            await batch_app(scope, receive, send)

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meshbatch-demo-consumer")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--database", required=True)
    parser.add_argument("--replica", default="consumer")
    parser.add_argument("--grpc-port", type=int, default=None,
                        help="also serve the store over gRPC on this port (meshbatch.demo.Events/Store, and batches)")
    args = parser.parse_args(argv)
    from meshbatch import extras

    uvicorn = extras.import_module("uvicorn", "demo", "the demo's consumer")

    grpc_address = f"{args.host}:{args.grpc_port}" if args.grpc_port is not None else None
    app = build_app(open_store(args.database), Counts(), args.replica, grpc_address)
    config = uvicorn.Config(app, host=args.host, port=args.port, loop="uvloop", http="httptools",
                            lifespan="on", log_level="warning", access_log=False)
    asyncio.run(uvicorn.Server(config).serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
