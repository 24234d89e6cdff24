"""`meshbatch example-upstream`: a small service that answers batches, for the README's quick start.

It is written with the consumer SDK (`meshbatch.consumer.asgi_app`), as your own batch-serving service would
be: `POST /orders/batch` takes a batch in the route's codec (a JSON array by default) and answers one result per
item, `{"order": ITEM, "batch_size": N}`, after `--delay-ms` (the time a call costs, whatever its size: what
makes batching pay). `GET /stats` counts the calls and items received (calls saved = items - calls), `GET
/health` answers 200. It serves with uvicorn (the `demo` extra).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import MutableMapping
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from meshbatch.consumer import asgi_app
from meshbatch.consumer.asgi import ASGIApp, Receive, Send

Scope = MutableMapping[str, Any]


@dataclass
class Stats:
    calls: int = 0
    items: int = 0
    largest_batch: int = 0


def build_app(delay_ms: float = 5.0, codec: str = "json-array", path: str = "/orders/batch",
              stats: Stats | None = None) -> ASGIApp:
    counts = stats if stats is not None else Stats()

    async def handle(orders: list[Any]) -> list[Any]:
        counts.calls += 1
        counts.items += len(orders)
        counts.largest_batch = max(counts.largest_batch, len(orders))
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        return [{"order": order, "batch_size": len(orders)} for order in orders]

    batches = asgi_app(handle, codec=codec, path=path)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in ("/stats", "/health") and scope["method"] == "GET":
            body = orjson.dumps(asdict(counts) if scope["path"] == "/stats" else {"status": "ok"})
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await batches(scope, receive, send)

    return app


def run(args: argparse.Namespace) -> int:
    from meshbatch import extras

    uvicorn = extras.import_module("uvicorn", "demo", "meshbatch example-upstream")
    host, port = args.listen
    app = build_app(args.delay_ms, args.codec, args.path)
    config = uvicorn.Config(app, host=host, port=port, loop="uvloop", http="httptools", lifespan="on",
                            log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    print(f"meshbatch example-upstream: listening on {host}:{port}, POST {args.path} ({args.codec}), "
          f"{args.delay_ms:g} ms a call", flush=True)
    try:
        asyncio.run(server.serve())
    except KeyboardInterrupt:
        pass
    return 0 if server.started else 1


__all__ = ["Stats", "build_app", "run"]
