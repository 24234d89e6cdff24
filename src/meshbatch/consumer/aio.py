"""The SDK as an aiohttp request handler: `app.router.add_post("/batch", aiohttp_handler(handle))`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from meshbatch.consumer.core import BatchApp, HandleAny

if TYPE_CHECKING:
    from aiohttp import web


def aiohttp_handler(handle: HandleAny, codec: str = "json-array", isolate: bool = True,
                    ) -> Callable[[web.Request], Awaitable[web.Response]]:
    from aiohttp import web  # aiohttp is optional: imported only by services that use it

    app = BatchApp(handle, codec, isolate)

    async def handler(request: web.Request) -> web.Response:
        status, content_type, body = await app.process(await request.read())
        return web.Response(status=status, body=body, headers={"Content-Type": content_type.decode()})

    return handler


__all__ = ["aiohttp_handler"]
