"""The SDK as an ASGI 3 application (uvicorn, hypercorn, Starlette mounts, httpx's ASGITransport)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from meshbatch.consumer.core import BatchApp, HandleAny

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def asgi_app(handle: HandleAny, codec: str = "json-array", path: str = "/batch",
             methods: tuple[str, ...] = ("POST", "PUT"), isolate: bool = True) -> ASGIApp:
    """An ASGI app answering batch requests on `path` with `handle(items) -> results`; 404 elsewhere, 405 for
    other methods. The lifespan protocol is accepted (nothing to set up). `isolate`: see `BatchApp`."""
    app = BatchApp(handle, codec, isolate)

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["path"] != path:
            await _reply(send, 404, b"application/json", orjson.dumps({"error": "not found", "reason": "no_route"}))
            return
        if scope["method"] not in methods:
            await _reply(send, 405, b"application/json",
                         orjson.dumps({"error": "method not allowed", "reason": "method_not_allowed"}),
                         [(b"allow", ", ".join(methods).encode())])
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        status, content_type, body = await app.process(b"".join(chunks))
        await _reply(send, status, content_type, body)

    return asgi


async def _reply(send: Send, status: int, content_type: bytes, body: bytes,
                 extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


__all__ = ["ASGIApp", "asgi_app"]
