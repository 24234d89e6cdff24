"""What a batch handler returns per item: a plain JSON value (200), an `ItemResponse`, or an `ItemError`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any


class ItemResponse:
    """A successful item answer with its own status and headers (the `envelope` codec carries them)."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int = 200, body: Any = None, headers: Mapping[str, str] | None = None) -> None:
        if not 100 <= status <= 599:
            raise ValueError(f"status {status} is not an HTTP status")
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


class ItemError(Exception):
    """A failed item: return it in the result list (or raise it from a per-item function under `each`).

    Raised from the batch handler itself, it answers the whole batch with its status."""

    def __init__(self, status: int, body: Any = None, headers: Mapping[str, str] | None = None) -> None:
        if not 400 <= status <= 599:
            raise ValueError(f"an item error has a 4xx or 5xx status, not {status}")
        self.status = status
        self.body = body if body is not None else {"error": HTTPStatus(status).phrase.lower()}
        self.headers = dict(headers or {})
        super().__init__(f"{status}: {self.body!r}")


Handle = Callable[[list[Any]], Awaitable[Sequence[Any]]]


def each(handle_one: Callable[[Any], Awaitable[Any]]) -> Handle:
    """A batch handler from a per-item one: items run concurrently, and an exception fails only its own item
    (an `ItemError` with its status, anything else 500)."""

    async def handle(items: list[Any]) -> Sequence[Any]:
        return await asyncio.gather(*(handle_one(item) for item in items), return_exceptions=True)

    return handle


__all__ = ["Handle", "ItemError", "ItemResponse", "each"]
