"""The consumer SDK: write `async def handle(items: list) -> list` and serve it in any batch codec.

    from meshbatch.consumer import asgi_app, ItemError

    async def handle(orders: list) -> list:
        return [await store(order) if order.get("sku") else ItemError(422, {"error": "sku missing"})
                for order in orders]

    app = asgi_app(handle, codec="envelope", path="/orders/batch")   # uvicorn module:app
    server = await serve_grpc(handle, "[::]:50051")                  # batch.codec: grpc (grpc extra)

Results are JSON values (answered 200), `ItemResponse(status, body, headers)` or `ItemError(status, body)`
(the envelope codec gives each caller its own status; json-array and ndjson put `{"status", "error"}` in the
item's place). `each(handle_one)` turns a per-item coroutine into a batch handler whose exceptions fail only
their own item. A batch handler that raises, or returns a list of the wrong length, is isolated by default: the
SDK calls it again on halves of the batch until the item at fault is alone, which is answered 500 while the
others get their results (`isolate=False`: the whole batch fails with 500; see `meshbatch.consumer.core`). An
`ItemError` raised by the batch handler answers the whole batch with its status; a misaligned answer is never
sent.
"""

from meshbatch.consumer.aio import aiohttp_handler
from meshbatch.consumer.asgi import asgi_app
from meshbatch.consumer.core import BatchApp
from meshbatch.consumer.grpc_server import GrpcBatchApp, GrpcItem, grpc_handler, serve_grpc
from meshbatch.consumer.items import ItemError, ItemResponse, each
from meshbatch.consumer.wire import WIRES

__all__ = ["WIRES", "BatchApp", "GrpcBatchApp", "GrpcItem", "ItemError", "ItemResponse", "aiohttp_handler", "asgi_app",
           "each", "grpc_handler", "serve_grpc"]
