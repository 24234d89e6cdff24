"""A check (a synchronous gate, service/stack.py) as a layer, for a check that must run below another layer: a
batching route's item size cap runs on each item the pipeline made, so it sits under the pipeline."""

from __future__ import annotations

from meshbatch.http.message import Response
from meshbatch.service import Call, Check, Service


class CheckLayer:
    __slots__ = ("check", "inner")

    def __init__(self, inner: Service, check: Check) -> None:
        self.inner = inner
        self.check = check

    async def __call__(self, call: Call) -> Response:
        refused = self.check(call)
        if refused is not None:
            raise refused
        return await self.inner(call)


__all__ = ["CheckLayer"]
