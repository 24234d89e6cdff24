"""`cluster` sink: batches to the route's upstream cluster in one of the batch codecs (json-array, ndjson,
envelope), through the same balancer, pool and (optional) `compress` stage as a batching route.

Each event's result is its own: a 2xx stores it; another status fails that event alone. A batch answered as a
whole with 5xx, 408 or 429, or not answered, means the upstream is unavailable; a whole-batch 4xx means
something in it was refused, and the flusher splits it. The upstream can deduplicate: `envelope` items carry
the event id as their `id` and an `idempotency-key` header; the other codecs get the ids, in order, in an
`x-meshbatch-event-ids` header on the batch request (when it fits in 8 KiB).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from meshbatch.batching.codecs import CODECS, ItemRequest
from meshbatch.errors import ProxyError
from meshbatch.http.message import Headers
from meshbatch.ingest.record import Record
from meshbatch.ingest.sinks.base import SINKS, BatchRejected, Outcome, SinkContext, SinkUnavailable

MAX_ID_HEADER = 8192


class ClusterSink:
    name = "cluster"

    def __init__(self, context: SinkContext) -> None:
        route = context.route
        assert context.send is not None
        sink = route.ingest.sink
        self.cluster = route.cluster
        self.codec = CODECS.get(sink.codec)(None)
        self.path = sink.upstream_path.encode()
        self.method = sink.upstream_method.encode()
        self.item_path = (route.match.path or route.match.path_prefix or "/").encode()
        self.send = context.send
        self.timeout = context.timeout
        self.batches = self.stored = self.failed = 0

    async def open(self) -> None:
        return None

    async def deliver(self, records: Sequence[Record]) -> list[Outcome]:
        forwards = self.codec.forwards_headers
        items = [ItemRequest(r.id, r.body, b"POST", self.item_path,
                             [(b"content-type", b"application/json"), (b"idempotency-key", r.id.encode())]
                             if forwards else None) for r in records]
        headers: Headers = [(b"content-type", self.codec.content_type)]
        if not forwards:
            ids = ",".join(r.id for r in records).encode()
            if len(ids) <= MAX_ID_HEADER:
                headers.append((b"x-meshbatch-event-ids", ids))
        body = self.codec.encode(items)
        try:
            response = await self.send(self.method, self.path, headers, body, self.timeout, ())
        except ProxyError as exc:
            raise SinkUnavailable(f"cluster {self.cluster}: {exc}") from exc
        status = response.status
        if not 200 <= status < 300:
            if 400 <= status < 500 and status not in (408, 429):
                raise BatchRejected(f"cluster {self.cluster}: the batch was answered {status}")
            raise SinkUnavailable(f"cluster {self.cluster}: the batch was answered {status}")
        results = self.codec.decode(status, response.headers, response.body, items)
        if results and all(r.reason for r in results):
            raise SinkUnavailable(f"cluster {self.cluster}: {results[0].reason}")
        outcomes: list[Outcome] = []
        for result in results:
            if 200 <= result.status < 300:
                outcomes.append(None)
                self.stored += 1
            else:
                outcomes.append(result.reason or f"upstream_status_{result.status}")
                self.failed += 1
        self.batches += 1
        return outcomes

    async def close(self) -> None:
        return None

    def summary(self) -> dict[str, Any]:
        return {"type": self.name, "cluster": self.cluster, "codec": self.codec.name, "path": self.path.decode(),
                "batches": self.batches, "stored": self.stored, "failed_items": self.failed}


@SINKS.register("cluster")
def _factory(context: SinkContext) -> ClusterSink:
    return ClusterSink(context)


__all__ = ["ClusterSink"]
