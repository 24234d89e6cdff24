"""One batch request in, one batch answer out: the part of the SDK that does not depend on a web framework.

**Isolation** (on by default): one bad item never fails its neighbours. When the batch handler raises (anything
but an `ItemError`, which answers the whole batch with its status on purpose) or returns a list of the wrong
length, the batch is split in halves and the handler called again on each half, recursively, until the item at
fault is alone: that item is answered 500 (`item_failed`, naming the exception's type, never its message), the
others get their results. When no call succeeds on a level of four parts or more (or of single items), the
handler fails whatever it is given (its database is down): the whole batch is answered 500, as without
isolation, so that the proxy sees a failed batch (and retries it, or counts it against the endpoint) rather
than a batch of items that each failed. For one failing item of n, the handler runs about 2·log2(n) more times
on parts of the batch, so it must be safe to call again for an item (the proxy's batch retries ask that of it
already).
`isolate=False` calls the handler once per batch: a raising handler then fails the whole batch (500).

Whatever `isolate` says, a result that has no JSON form fails only its own item (500 `result_not_json`).
"""

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


def _item_failure(reason: str, detail: str) -> Reply:
    return Reply(500, {"error": "internal server error", "reason": reason, "detail": detail})


def normalise(result: Any) -> Reply:
    if isinstance(result, ItemResponse):
        return Reply(result.status, result.body, result.headers)
    if isinstance(result, ItemError):
        return Reply(result.status, result.body, result.headers)
    if isinstance(result, BaseException):
        log.error("a batch item failed", exc_info=result)
        return _item_failure("item_failed", f"{type(result).__name__} in the item handler")
    return Reply(200, result)


class HandlerFailed(Exception):
    """The handler failed a whole (part of a) batch: raised, or returned a result list of the wrong length."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class Handling:
    """The handler called for a batch's items, with isolation: one reply per item, whatever the wire."""

    def __init__(self, handle: HandleAny, isolate: bool = True) -> None:
        self.handle = handle
        self.isolate = isolate

    async def replies(self, items: list[Any]) -> list[Reply]:
        """One reply per item, the items at fault isolated (above). Raises ItemError when the handler answered
        the whole batch with one, HandlerFailed when the batch fails as a whole."""
        try:
            results = await self._call(items)
        except HandlerFailed as exc:
            if not self.isolate or len(items) < 2:
                raise
            return await self._isolated(items, exc)
        return [normalise(r) for r in results]

    async def _call(self, items: list[Any]) -> Sequence[Any]:
        """The handler's results for `items`; raises ItemError as the handler did, else HandlerFailed."""
        try:
            results = self.handle(items)
            if inspect.isawaitable(results):
                results = await results
        except ItemError:
            raise
        except Exception as exc:
            log.exception("the batch handler failed on %d item(s)", len(items))
            raise HandlerFailed("handler_error", f"{type(exc).__name__} in the batch handler") from None
        if not isinstance(results, Sequence) or isinstance(results, str | bytes) or len(results) != len(items):
            got = len(results) if isinstance(results, Sequence) else type(results).__name__
            raise HandlerFailed("handler_result_count", f"the handler got {len(items)} items and returned {got}")
        return results

    async def _isolated(self, items: list[Any], failure: HandlerFailed) -> list[Reply]:
        """Each item's reply, found by calling the handler on halves of a batch it failed as a whole, level by
        level. Raises HandlerFailed when no call succeeds on a level of four parts or more, or of single items:
        a failure of every part is the handler's (a database down), not an item's."""
        replies: list[Reply | None] = [None] * len(items)
        failing: list[tuple[int, int, HandlerFailed | ItemError]] = [(0, len(items), failure)]
        calls = succeeded = 0
        while failing:
            level: list[tuple[int, int, HandlerFailed | ItemError]] = []
            tried = 0
            for start, end, why in failing:
                if end - start == 1:  # alone: the item at fault
                    replies[start] = (normalise(why) if isinstance(why, ItemError)
                                      else _item_failure("item_failed", why.detail.replace("batch handler", "handler")))
                    continue
                middle = (start + end) // 2
                for lo, hi in ((start, middle), (middle, end)):
                    tried += 1
                    try:
                        results = await self._call(items[lo:hi])
                    except (HandlerFailed, ItemError) as exc:
                        level.append((lo, hi, exc))
                        continue
                    succeeded += 1
                    replies[lo:hi] = [normalise(r) for r in results]
            calls += tried
            if tried and not succeeded and (tried >= 4 or all(hi - lo == 1 for lo, hi, _ in level)):
                raise HandlerFailed(failure.reason, f"{failure.detail}, and on every part of the batch tried "
                                                    f"({calls} calls): the handler fails, not one item")
            failing = level
        assert all(reply is not None for reply in replies)
        return replies  # type: ignore[return-value]  # every slot is filled: each part ends answered


class BatchApp(Handling):
    """Calls `handle(items) -> results` for each batch request in one codec's shape."""

    def __init__(self, handle: HandleAny, codec: str = "json-array", isolate: bool = True) -> None:
        super().__init__(handle, isolate)
        self.wire: Wire = WIRES.get(codec)()

    async def process(self, body: bytes) -> tuple[int, bytes, bytes]:
        """(status, content type, body) of the answer to one batch request body."""
        try:
            items, ids = self.wire.parse(body)
        except WireError as exc:
            return _error(400, exc.reason, exc.detail)
        try:
            replies = await self.replies(items)
        except ItemError as exc:
            return exc.status, JSON, dumps(exc.body)
        except HandlerFailed as exc:
            return _error(500, exc.reason, exc.detail)
        return 200, self.wire.content_type, self._render(replies, ids)

    def _render(self, replies: list[Reply], ids: list[str]) -> bytes:
        try:
            return self.wire.render(replies, ids)
        except (TypeError, ValueError, RecursionError):
            pass
        checked: list[Reply] = []
        for reply in replies:  # find the results without a JSON form: only their items fail
            try:
                dumps(reply.body)
                dumps(reply.headers)
            except (TypeError, ValueError, RecursionError) as exc:
                log.error("a batch result is not JSON-serialisable: %s", exc)
                reply = _item_failure("result_not_json", f"the item's result has no JSON form ({type(exc).__name__})")
            checked.append(reply)
        return self.wire.render(checked, ids)


__all__ = ["BatchApp", "HandlerFailed", "Handling", "normalise"]
