"""One batch request in, one batch answer out: the part of the SDK that does not depend on a web framework."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from meshbatch.consumer.items import ItemError, ItemResponse
from meshbatch.consumer.wire import WIRES, Reply, Wire, WireError, dumps

log = logging.getLogger("meshbatch.consumer")
JSON = b"application/json"
HandleAny = Callable[[list[Any]], Any]


def _error(status: int, reason: str, detail: str) -> tuple[int, bytes, bytes]:
    error = {400: "bad request", 500: "internal server error"}.get(status, "error")
    return status, JSON, orjson.dumps({"error": error, "reason": reason, "detail": detail})


def normalise(result: Any) -> Reply:
    if isinstance(result, ItemResponse):
        return Reply(result.status, result.body, result.headers)
    if isinstance(result, ItemError):
        return Reply(result.status, result.body, result.headers)
    if isinstance(result, BaseException):
        log.error("a batch item failed", exc_info=result)
        return Reply(500, {"error": "internal server error"})
    return Reply(200, result)


class BatchApp:
    """Calls `handle(items) -> results` for each batch request in one codec's shape."""

    def __init__(self, handle: HandleAny, codec: str = "json-array") -> None:
        self.handle = handle
        self.wire: Wire = WIRES.get(codec)()

    async def process(self, body: bytes) -> tuple[int, bytes, bytes]:
        """(status, content type, body) of the answer to one batch request body."""
        try:
            items, ids = self.wire.parse(body)
        except WireError as exc:
            return _error(400, exc.reason, exc.detail)
        try:
            results = self.handle(items)
            if inspect.isawaitable(results):
                results = await results
        except ItemError as exc:
            return exc.status, JSON, dumps(exc.body)
        except Exception as exc:
            log.exception("the batch handler failed")
            return _error(500, "handler_error", f"{type(exc).__name__} in the batch handler")
        if not isinstance(results, Sequence) or isinstance(results, str | bytes) or len(results) != len(items):
            got = len(results) if isinstance(results, Sequence) else type(results).__name__
            return _error(500, "handler_result_count", f"the handler got {len(items)} items and returned {got}")
        try:
            return 200, self.wire.content_type, self.wire.render([normalise(r) for r in results], ids)
        except (TypeError, ValueError, RecursionError) as exc:
            log.exception("a batch result is not JSON-serialisable")
            return _error(500, "handler_result_not_json", str(exc)[:200])


__all__ = ["BatchApp", "normalise"]
