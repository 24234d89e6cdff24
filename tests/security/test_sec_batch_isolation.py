"""One caller's bad item must not fail the callers batched with it, and every caller gets the exact bytes of its
result: hostile inputs against a real `meshbatch run` and a real batch upstream (the consumer SDK on uvicorn)
that refuses any batch holding a poisoned item, as an upstream refuses a body it cannot read.

Batches are built deterministically: a held "plug" batch occupies the route's only in-flight slot, callers queue
behind it (checked on /batchers), and releasing the upstream sends them as one batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import httpx
import pytest

from testbed.batch_upstream import BatchUpstream, Callers, Plug, batch_route, serving, wait_until
from testbed.config import cluster, config, listener
from testbed.proxy import MeshbatchProcess

# route name -> (path prefix, upstream path, extra batch settings)
ROUTES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "ja": ("/ja/", "/b/json-array/poison", {}),
    "nd": ("/nd/", "/b/ndjson/poison/422", {}),
    "env": ("/env/", "/b/envelope/poison/413", {}),
    "off": ("/off/", "/b/json-array/poison", {"isolate": "off"}),
    "gate": ("/gate/", "/b/json-array/poison", {}),
    "ja_exact": ("/ja-exact/", "/b/json-array/mirror", {}),
    "nd_exact": ("/nd-exact/", "/b/ndjson/mirror", {}),
    "env_exact": ("/env-exact/", "/b/envelope/mirror", {}),
}
REFUSAL = {"error": "the batch holds an item that cannot be processed"}


upstream = pytest.fixture(scope="module", name="upstream")(serving)


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, upstream: BatchUpstream) -> MeshbatchProcess:
    routes = [batch_route(name, prefix, path, timeout_ms=10_000, **extra)
              for name, (prefix, path, extra) in ROUTES.items()]
    process: MeshbatchProcess = module_mesh.start(config([listener("main", routes)],
                                                         [cluster("batch", upstream.address)]))
    return process


@pytest.fixture
def callers(proxy: MeshbatchProcess, upstream: BatchUpstream) -> Iterator[Callers]:
    upstream.reset()
    with Callers(proxy.url("main"), proxy.admin_url) as c:
        yield c
        upstream.release()


def one_batch(callers: Callers, upstream: BatchUpstream, route: str,
              calls: list[dict[str, Any]]) -> list[httpx.Response]:
    """Queue `calls` (kwargs of Callers.post, with "body" or "content") behind a plug, release: every answer."""
    prefix = ROUTES[route][0]
    with Plug(callers, upstream, prefix + "plug", route) as plug:
        futures: list[Future[httpx.Response]] = []
        for call in calls:
            call = dict(call)
            futures.append(callers.post(prefix + "x", call.pop("body", None), **call))
        callers.wait_queued(route, len(calls))
    assert plug.response.status_code in (200, 201)
    return [f.result(15) for f in futures]


def calls_after_plug(upstream: BatchUpstream, route: str) -> list[list[Any]]:
    """The items of every call the upstream got on `route` after the plug's."""
    path = ROUTES[route][1].split("?")[0]
    return [b.items for b in upstream.snapshot() if b.path == path and b.items != [{"plug": True}]]


def poisoned(n: int, poison: set[int]) -> list[dict[str, Any]]:
    return [{"body": {"n": i, "poison": True} if i in poison else {"n": i}} for i in range(n)]


def test_one_poisoned_caller_among_32_fails_alone(callers: Callers, upstream: BatchUpstream) -> None:
    before = callers.metric("meshbatch_batch_splits_total", route="ja")
    responses = one_batch(callers, upstream, "ja", poisoned(32, {19}))
    for i, response in enumerate(responses):
        if i != 19:
            assert response.status_code == 200, (i, response.status_code, response.text)
            assert response.json()["echo"] == {"n": i}, "each caller gets its own result"
            assert "x-meshbatch-isolated" not in response.headers
    refused = responses[19]
    assert refused.status_code == 400 and refused.json() == REFUSAL, "the upstream's own refusal, not the proxy's"
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["x-meshbatch-isolated"] == "true"
    assert "x-upstream-detail" not in refused.headers
    calls = calls_after_plug(upstream, "ja")
    assert len(calls[0]) == 32 and len(calls) == 1 + 2 * math.ceil(math.log2(32))
    assert [items for items in calls if {"n": 19, "poison": True} in items][-1] == [{"n": 19, "poison": True}]
    assert callers.metric("meshbatch_batch_splits_total", route="ja") == before + 5
    isolation = callers.batcher("ja")["isolation"]
    assert isolation["mode"] == "bisect" and isolation["isolated"] >= 1
    assert callers.batcher("ja")["in_flight"] == 0


def test_two_poisoned_callers_within_the_call_bound(callers: Callers, upstream: BatchUpstream) -> None:
    responses = one_batch(callers, upstream, "ja", poisoned(32, {0, 21}))
    assert [i for i, r in enumerate(responses) if r.status_code == 400] == [0, 21]
    assert all(r.status_code == 200 and r.json()["echo"] == {"n": i}
               for i, r in enumerate(responses) if i not in (0, 21))
    extra = len(calls_after_plug(upstream, "ja")) - 1
    assert extra <= 4 * math.ceil(math.log2(32)), f"{extra} extra upstream calls"


@pytest.mark.parametrize(("route", "status"), [("nd", 422), ("env", 413)])
def test_every_codec_isolates(callers: Callers, upstream: BatchUpstream, route: str, status: int) -> None:
    responses = one_batch(callers, upstream, route, poisoned(8, {5}))
    assert responses[5].status_code == status and responses[5].json() == REFUSAL
    ok = 201 if route == "env" else 200
    assert [r.status_code for i, r in enumerate(responses) if i != 5] == [ok] * 7
    assert [r.json()["echo"] for i, r in enumerate(responses) if i != 5] == [{"n": i} for i in range(8) if i != 5]


def test_isolate_off_keeps_the_old_answer(callers: Callers, upstream: BatchUpstream) -> None:
    responses = one_batch(callers, upstream, "off", poisoned(8, {3}))
    for response in responses:
        assert response.status_code == 502 and response.json()["reason"] == "upstream_status_400"
        assert response.json()["upstream_status"] == 400 and "cannot be processed" not in response.text
    assert len(calls_after_plug(upstream, "off")) == 1


def test_a_deadline_passing_during_the_search_is_answered_504_and_never_sent_late(
        callers: Callers, upstream: BatchUpstream) -> None:
    # The upstream answers one call at a time (its gate): the test decides when each part goes.
    budget_ms = 1500
    prefix = ROUTES["gate"][0]
    with Plug(callers, upstream, prefix + "plug", "gate", release_all=False):
        futures = []
        for i in range(8):
            body: dict[str, Any] = {"n": i, "poison": True} if i == 7 else {"n": i}
            headers = None
            if i == 6:  # its deadline, as the upstream's clock reads it (CLOCK_MONOTONIC is machine-wide)
                body["deadline"] = time.monotonic() + budget_ms / 1000
                headers = {"x-meshbatch-deadline-ms": str(budget_ms)}
            futures.append(callers.post(prefix + "x", body, headers=headers))
            callers.wait_queued("gate", i + 1)  # one at a time: the batch keeps this order
        started = len(upstream.snapshot())
        for step in range(3):  # the plug, the batch (refused), its left half [0..3] (answered)
            upstream.release(1)
            wait_until(lambda step=step: len(upstream.snapshot()) >= started + step + 1, 10, "the next call")
        upstream.wait_batches(started + 3)  # the right half [4..7] is at the upstream, held
        assert upstream.snapshot()[-1].items[-2]["n"] == 6
        late = futures[6].result(budget_ms / 1000 + 10)  # its deadline passes while the part is out
        upstream.release()
    responses = [f.result(15) for f in futures]
    assert late.status_code == 504 and late.json()["reason"] == "upstream_timeout"
    assert responses[7].status_code == 400
    assert [r.status_code for r in responses[:6]] == [200] * 6
    batches = [b for b in upstream.snapshot() if b.path == ROUTES["gate"][1]]
    assert all(not b.late() for b in batches), "an item was sent after its caller's deadline"
    assert [b.items for b in batches[-2:]] == [[{"n": 4}, {"n": 5}], [{"n": 7, "poison": True}]]


EXACT = [
    b'{"big":123456789012345678901234567890,"neg":-98765432109876543210987654321,"f":1.0,"z":-0.0}',
    b'{"u":"caf\\u00e9 \\ud83d\\ude00","e":1.5e300,"small":1E-7,"int":1}',
    b'[18446744073709551616, -9223372036854775809, 0.10000000000000000555, 1.50]',
    b'"just a string with \\"escapes\\" and \\/ slash"',
    b"12345678901234567890123456789012345678901234567890",
]


@pytest.mark.parametrize("route", ["ja_exact", "nd_exact", "env_exact"])
def test_numbers_and_escapes_round_trip_byte_for_byte(callers: Callers, upstream: BatchUpstream,
                                                      route: str) -> None:
    calls = [{"content": body, "headers": {"content-type": "application/json"}} for body in EXACT]
    responses = one_batch(callers, upstream, route, calls)
    for body, response in zip(EXACT, responses, strict=True):
        assert response.status_code == 200 and response.content == body, (body, response.content)
    (batch,) = calls_after_plug(upstream, route)
    assert len(batch) == len(EXACT)
    sent = upstream.snapshot()[-1].body
    assert all(body in sent for body in EXACT), "item bodies are spliced into the batch unchanged"


def test_a_1000_deep_array_is_refused_at_the_door(callers: Callers, upstream: BatchUpstream) -> None:
    before = callers.metric("meshbatch_batch_rejections_total", route="ja", reason="json_too_deep")
    deep = b"[" * 1000 + b"]" * 1000
    response = callers.call("/ja/x", content=deep, headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["reason"] == "json_too_deep"
    assert "64 levels" in response.json()["detail"]
    ok = callers.call("/ja/x", content=b"[" * 64 + b"]" * 64, headers={"content-type": "application/json"})
    assert ok.status_code == 200
    assert all(b.body != b"[" + deep + b"]" for b in upstream.snapshot())
    assert callers.metric("meshbatch_batch_rejections_total", route="ja", reason="json_too_deep") == before + 1
