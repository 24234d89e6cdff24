"""The pipeline in front of a batching route: each request is preprocessed, then batched.

A request that decodes into one event is batched as that event (re-encoded as compact JSON). One that decodes
into several (NDJSON) is batched as several items; the caller gets one answer, `{"results": [...]}` with each
item's status and body, whose status is 200 when every item succeeded and the first failing status otherwise.
A request whose events were all filtered out is answered 204 with `x-meshbatch-filtered`. The items of one
request with an `idempotency-key` K carry the keys `K:0`, `K:1`, ... (as an ingest route names its events), so
that a retry of the request shares or replays each item, and its items never share each other's.

The pipeline's run is awaited: it may happen in a worker process (`Pipeline.process`), never holding the loop.
Nor does the fan-out: a request of thousands of events starts its items `FAN_OUT` at a time, letting the event
loop serve others between each group, and builds its answer the same way.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from meshbatch.http.message import Headers, Request, Response
from meshbatch.pipeline.runner import Pipeline
from meshbatch.pipeline.work import encode_event
from meshbatch.service import Call, Service

JSON = (b"content-type", b"application/json")
IDEMPOTENCY = b"idempotency-key"
FAN_OUT = 256  # items started (or answers gathered) per event-loop turn


def _body_value(response: Response) -> Any:
    try:
        return orjson.loads(response.body) if response.body else None
    except orjson.JSONDecodeError:
        return response.body.decode("utf-8", errors="replace")


def _keyed(headers: Headers, key: bytes, index: int) -> Headers:
    part_key = b"%s:%d" % (key, index)
    return [(name, part_key if name == IDEMPOTENCY else value) for name, value in headers]


class PipelineLayer:
    __slots__ = ("inner", "pipeline")

    def __init__(self, pipeline: Pipeline, inner: Service) -> None:
        self.pipeline = pipeline
        self.inner = inner

    async def __call__(self, call: Call) -> Response:
        request = call.request
        result = await self.pipeline.process(request)
        if result.headers is not None:
            request.headers = result.headers
        events = result.events
        if events is None:
            request.body = result.body
            return await self.inner(call)
        if not events:
            return Response(204, [(b"x-meshbatch-filtered", str(result.dropped + result.failed).encode())])
        if len(events) == 1:
            request.body = events[0]
            return await self.inner(call)
        tasks: list[asyncio.Future[Response]] = []
        key = request.header(IDEMPOTENCY)
        try:
            for start in range(0, len(events), FAN_OUT):
                if start:
                    await asyncio.sleep(0)
                for index, event in enumerate(events[start:start + FAN_OUT], start):
                    headers = request.headers if key is None else _keyed(request.headers, key, index)
                    part = Request(request.method, request.target, headers, event, host=request.host,
                                   client=request.client, request_id=request.request_id,
                                   received_at=request.received_at)
                    part.route = request.route
                    part.identity = request.identity
                    # the caller's token and deadline go with each part (policies, idempotency scope)
                    tasks.append(asyncio.ensure_future(self.inner(call.part(part))))
            answers = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        status = next((a.status for a in answers if not 200 <= a.status < 300), 200)
        results: list[dict[str, Any]] = []
        for start in range(0, len(answers), FAN_OUT):
            if start:
                await asyncio.sleep(0)
            results.extend({"status": a.status, "body": _body_value(a)} for a in answers[start:start + FAN_OUT])
        return Response(status, [JSON], orjson.dumps({"results": results}))


__all__ = ["PipelineLayer", "encode_event"]
