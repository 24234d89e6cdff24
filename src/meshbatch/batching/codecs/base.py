"""The codec interface: encode queued items into one upstream body, decode its answer into one result each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from meshbatch.http.message import Headers
from meshbatch.registry import Registry


class ItemRequest:
    """One caller's request as a batch member."""

    __slots__ = ("body", "headers", "id", "method", "path")

    def __init__(self, id: str, body: bytes, method: bytes = b"POST", path: bytes = b"/",
                 headers: Headers | None = None) -> None:
        self.id = id
        self.body = body
        self.method = method
        self.path = path
        self.headers: Headers = headers if headers is not None else []


class ItemResult:
    """One caller's answer."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes, headers: Headers | None = None) -> None:
        self.status = status
        self.body = body
        self.headers: Headers = headers if headers is not None else []


class Codec(Protocol):
    name: str
    content_type: bytes

    def check_item(self, item: ItemRequest) -> str | None:
        """None if the item can be batched with this codec, else the reason it cannot (answered 400)."""
        ...

    def encode(self, items: Sequence[ItemRequest]) -> bytes: ...

    def decode(self, status: int, headers: Headers, body: bytes, items: Sequence[ItemRequest]) -> list[ItemResult]:
        """One result per item, in the order of `items`; never raises for a bad upstream answer."""
        ...


CODECS: Registry[type[Codec]] = Registry("codec")

__all__ = ["CODECS", "Codec", "ItemRequest", "ItemResult"]
