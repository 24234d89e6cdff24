"""A batch call the upstream does not know (404): every caller is told which call was refused."""

from __future__ import annotations

import asyncio

import orjson
from batching_support import make_handler, request, settle, submit

from meshbatch.batching.codecs.base import ItemResult
from meshbatch.batching.codecs.failures import failure, naming_target, upstream_status


async def test_a_404_names_the_upstream_path_called() -> None:
    handler, upstream, _clock = make_handler()  # no upstream_path: the default /batch
    tasks = [submit(handler, request(n)) for n in range(2)]
    await settle()
    upstream.calls[0].reply(404, b"no such path")
    for response in await asyncio.gather(*tasks):
        payload = orjson.loads(response.body)
        assert response.status == 502 and payload["reason"] == "upstream_status_404"  # unchanged
        assert payload["upstream_status"] == 404
        assert "POST /batch" in payload["detail"] and "batch.upstream_path" in payload["detail"]


async def test_a_configured_path_is_the_one_named() -> None:
    handler, upstream, _clock = make_handler(upstream_path="/orders/batch", upstream_method="PUT")
    task = submit(handler, request(1))
    await settle()
    upstream.calls[0].reply(404, b"")
    payload = orjson.loads((await task).body)
    assert "PUT /orders/batch" in payload["detail"]


def test_only_the_refusals_of_that_status_are_renamed() -> None:
    own = ItemResult(200, b"1")
    other = failure("codec_error", "x")
    refused = upstream_status(404, [(b"retry-after", b"2")])
    named = naming_target([own, other, refused, refused], 404, b"POST", b"/batch")
    assert named[0] is own and named[1] is other and named[2] is named[3]
    assert named[2].reason == "upstream_status_404" and (b"retry-after", b"2") in named[2].headers
    assert b"POST /batch" in named[2].body
    assert naming_target([own], 404, b"POST", b"/batch") == [own]
