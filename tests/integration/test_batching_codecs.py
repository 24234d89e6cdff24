"""Every batch codec end to end through `meshbatch run` and a real batch upstream (the consumer SDK on uvicorn),
and every way a batch answer can be unusable: each caller gets its own answer, or its own JSON reason.

Batches are built deterministically: a held "plug" batch occupies the route's only in-flight slot, callers queue
behind it (checked on /batchers), and releasing the upstream sends them as one batch.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import httpx
import orjson
import pytest

from testbed.batch_upstream import BATCH_HEADERS, BatchUpstream, Callers, Plug, batch_route, serving
from testbed.config import cluster, config, listener
from testbed.proxy import MeshbatchProcess
from testbed.upstream import refused_port

# route name -> (path prefix, upstream path, extra batch settings)
ROUTES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "ja": ("/ja/", "/b/json-array/ok", {}),
    "nd": ("/nd/", "/b/ndjson/ok", {}),
    "env": ("/env/", "/b/envelope/shuffled", {}),
    "ja_more": ("/ja-more/", "/b/json-array/wrong-count", {}),
    "nd_fewer": ("/nd-fewer/", "/b/ndjson/wrong-count/fewer", {}),
    "ja_notjson": ("/ja-notjson/", "/b/json-array/not-json", {}),
    "nd_notjson": ("/nd-notjson/", "/b/ndjson/not-json", {}),
    "env_notjson": ("/env-notjson/", "/b/envelope/not-json", {}),
    "ja_notarray": ("/ja-notarray/", "/b/json-array/not-array", {}),
    "env_notenv": ("/env-notenv/", "/b/envelope/not-array", {}),
    "ja_503": ("/ja-503/", "/b/json-array/status/503", {}),
    "env_500": ("/env-500/", "/b/envelope/status/500", {}),
    "env_drop": ("/env-drop/", "/b/envelope/drop", {}),
    "env_bad": ("/env-bad/", "/b/envelope/bad-status", {}),
    "env_ok": ("/env-ok/", "/b/envelope/ok", {}),
    "put": ("/put/", "/b/ndjson/ok?v=2", {"upstream_method": "PUT", "key": ["query:shape"]}),
}


upstream = pytest.fixture(scope="module", name="upstream")(serving)


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, upstream: BatchUpstream) -> MeshbatchProcess:
    routes = [batch_route(name, prefix, path, **extra) for name, (prefix, path, extra) in ROUTES.items()]
    routes.append(batch_route("slow", "/slow/", "/b/json-array/ok?ms=1000", timeout_ms=300))
    routes.append(batch_route("dead", "/dead/", "/b/json-array/ok", cluster="dead"))
    clusters = [cluster("batch", upstream.address), cluster("dead", f"127.0.0.1:{refused_port()}")]
    process: MeshbatchProcess = module_mesh.start(config([listener("main", routes)], clusters))
    return process


@pytest.fixture
def callers(proxy: MeshbatchProcess, upstream: BatchUpstream) -> Iterator[Callers]:
    upstream.reset()
    with Callers(proxy.url("main"), proxy.admin_url) as c:
        yield c
        upstream.release()


def one_batch(callers: Callers, upstream: BatchUpstream, route: str,
              calls: list[dict[str, Any]], queued: int | None = None) -> tuple[httpx.Response, list[httpx.Response]]:
    """Queue `calls` (kwargs of Callers.post, with "path" and "body") behind a plug; release; every answer."""
    prefix = ROUTES[route][0] if route in ROUTES else f"/{route}/"
    sent = callers.sent
    with Plug(callers, upstream, prefix + "plug", route) as plug:
        futures: list[Future[httpx.Response]] = []
        for call in calls:
            call = dict(call)
            futures.append(callers.post(call.pop("path", prefix + "x"), call.pop("body", None), **call))
        callers.wait_queued(route, len(calls) if queued is None else queued)
    responses = [f.result(10) for f in futures]
    plug_response = plug.response
    assert callers.sent - sent == len(calls) + 1 and callers.answered == callers.sent
    return plug_response, responses


def assert_batch_headers(responses: list[httpx.Response], size: int, flush: str = "wait") -> None:
    ids = {r.headers["x-meshbatch-batch-id"] for r in responses}
    assert len(ids) == 1, f"one batch expected, got {ids}"
    for r in responses:
        assert all(name in r.headers for name in BATCH_HEADERS), r.headers
        assert r.headers["x-meshbatch-batch-size"] == str(size)
        assert r.headers["x-meshbatch-flush"] == flush
        assert float(r.headers["x-meshbatch-queue-ms"]) >= 0


def error_of(response: httpx.Response, status: int, reason: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body["reason"] == reason, body
    assert isinstance(body["error"], str) and body["error"]
    return body


# every codec, end to end ------------------------------------------------------------------------------------
@pytest.mark.parametrize("route", ["ja", "nd"])
def test_each_caller_gets_its_own_result(callers: Callers, upstream: BatchUpstream, route: str) -> None:
    bodies = [{"order": i, "sku": f"sku-{i}", "tags": ["a", "b"][: i % 3]} for i in range(12)]
    plug, responses = one_batch(callers, upstream, route, [{"body": b} for b in bodies])
    assert plug.status_code == 200 and plug.json()["echo"] == {"plug": True}
    for body, response in zip(bodies, responses, strict=True):
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        result = response.json()
        assert result["echo"] == body, "a caller got another caller's result"
        assert result["n"] == 12
    assert sorted(r.json()["i"] for r in responses) == list(range(12))
    assert_batch_headers(responses, 12)
    assert plug.headers["x-meshbatch-batch-id"] != responses[0].headers["x-meshbatch-batch-id"]

    plug_batch, batch = upstream.snapshot()
    assert plug_batch.items == [{"plug": True}]
    assert batch.method == "POST" and batch.path == ROUTES[route][1].split("?")[0]
    assert batch.headers["content-type"] == ("application/json" if route == "ja" else "application/x-ndjson")
    assert sorted(batch.items, key=lambda b: b["order"]) == bodies
    # the caller's answer i is the upstream's result for the item at i in the batch
    for response in responses:
        assert batch.items[response.json()["i"]] == response.json()["echo"]


def test_json_array_splices_bodies_and_ndjson_puts_one_per_line(callers: Callers, upstream: BatchUpstream) -> None:
    pretty = b'{\n  "order": 1,\n  "note": "two\\nlines"\n}\n'
    call = {"content": pretty, "headers": {"content-type": "application/json"}}
    _, (ja,) = one_batch(callers, upstream, "ja", [call])
    _, (nd,) = one_batch(callers, upstream, "nd", [call])
    assert ja.json()["echo"] == nd.json()["echo"] == {"order": 1, "note": "two\nlines"}
    batches = upstream.snapshot()
    assert batches[1].body == b"[" + pretty + b"]", "json-array sends each body as the caller wrote it"
    lines = batches[3].body.split(b"\n")
    # ndjson: one document per line, its line breaks turned into spaces, nothing re-serialised
    assert lines == [b'{   "order": 1,   "note": "two\\nlines" }', b""]


def test_envelope_per_item_status_headers_body_in_any_order(callers: Callers, upstream: BatchUpstream) -> None:
    calls: list[dict[str, Any]] = [
        {"path": "/env/orders?page=1", "body": {"n": 0}},
        {"path": "/env/orders/7", "body": {"n": 1, "status": 202, "headers": {"x-custom": "seven"}},
         "method": "PUT", "headers": {"x-caller": "c1", "x-meshbatch-priority": "high"}},
        {"path": "/env/orders",
         "body": {"n": 2, "status": 409, "headers": {"content-type": "application/problem+json"}}},
        {"path": "/env/notes", "content": "plain text, caf\u00e9".encode(),
         "headers": {"content-type": "text/plain"}},
    ]
    _, responses = one_batch(callers, upstream, "env", calls)
    assert [r.status_code for r in responses] == [201, 202, 409, 201]
    assert responses[0].json()["echo"] == {"n": 0} and responses[0].json()["n"] == 4
    assert responses[1].json()["i"] == 0, "the high-priority caller goes first in its batch"
    assert responses[1].headers["x-custom"] == "seven"
    assert responses[1].json()["echo"]["n"] == 1
    assert responses[2].headers["content-type"] == "application/problem+json"
    assert responses[3].json()["echo"] == "plain text, caf\u00e9"
    for r in responses:
        assert r.headers["x-item-index"] == str(r.json()["i"])
    assert_batch_headers(responses, 4)

    batch = upstream.snapshot()[1]
    assert batch.headers["content-type"] == "application/json"
    by_body = {orjson.dumps(req.get("body")): req for req in batch.requests}
    put = by_body[orjson.dumps(calls[1]["body"])]
    assert put["method"] == "PUT" and put["url"] == "/env/orders/7"
    assert put["headers"]["x-caller"] == "c1"
    forwarded = {name.lower() for req in batch.requests for name in req["headers"]}
    assert not forwarded & {"host", "content-length", "connection", "x-meshbatch-priority"}, forwarded
    assert by_body[orjson.dumps(calls[0]["body"])]["url"] == "/env/orders?page=1"
    text = by_body[orjson.dumps("plain text, caf\u00e9")]
    assert text["headers"]["content-type"] == "text/plain"
    assert len({req["id"] for req in batch.requests}) == 4


@pytest.mark.parametrize(("route", "content_type"), [("ja", "application/json"), ("nd", "application/json"),
                                                     ("env", "application/json")])
def test_curl_sees_the_batch_headers(proxy: MeshbatchProcess, callers: Callers, route: str,
                                     content_type: str) -> None:
    out = subprocess.run(
        ["/usr/bin/curl", "-sS", "-i", "--max-time", "10", "-H", f"content-type: {content_type}",
         "--data", '{"from": "curl"}', proxy.url("main", ROUTES[route][0] + "c")],
        capture_output=True, check=True, timeout=15)
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0].split()[1] == ("201" if route == "env" else "200")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    assert headers["x-meshbatch-batch-size"] == "1"
    assert headers["x-meshbatch-flush"] == "wait"
    assert all(name in headers for name in BATCH_HEADERS)
    assert orjson.loads(body)["echo"] == {"from": "curl"}


def test_upstream_method_and_key_query_are_encoded(callers: Callers, upstream: BatchUpstream) -> None:
    response = callers.call("/put/x?shape=x%26admin%3D1+2", {"k": 1})
    assert response.status_code == 200 and response.json()["echo"] == {"k": 1}
    batch = upstream.snapshot()[0]
    assert batch.method == "PUT"
    assert batch.query == {"v": "2", "shape": "x&admin=1 2"}, "a key value cannot add query parameters"


# unusable batch answers -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("route", "reason"), [
    ("ja_more", "upstream_result_count"),
    ("nd_fewer", "upstream_result_count"),
    ("ja_notjson", "upstream_not_json"),
    ("nd_notjson", "upstream_not_json"),
    ("env_notjson", "upstream_not_json"),
    ("ja_notarray", "upstream_not_array"),
    ("env_notenv", "upstream_not_envelope"),
])
def test_a_bad_batch_answer_fails_every_caller_with_a_reason(callers: Callers, upstream: BatchUpstream, route: str,
                                                            reason: str) -> None:
    plug, responses = one_batch(callers, upstream, route, [{"body": {"i": i}} for i in range(5)])
    for response in [plug, *responses]:
        body = error_of(response, 502, reason)
        assert body["detail"]
    assert_batch_headers(responses, 5)
    assert [b.size for b in upstream.snapshot()] == [1, 5]


@pytest.mark.parametrize(("route", "status"), [("ja_503", 503), ("env_500", 500)])
def test_an_upstream_error_status_is_a_502_for_every_caller(callers: Callers, upstream: BatchUpstream, route: str,
                                                          status: int) -> None:
    before = callers.metric("meshbatch_batch_upstream_calls_total", route=route, outcome="error")
    plug, responses = one_batch(callers, upstream, route, [{"body": {"i": i}} for i in range(3)])
    for response in [plug, *responses]:
        body = error_of(response, 502, f"upstream_status_{status}")
        assert body["upstream_status"] == status
        assert response.headers["retry-after"] == "7", "the upstream's Retry-After is passed on"
    assert callers.metric("meshbatch_batch_upstream_calls_total", route=route, outcome="error") == before + 2


def test_a_missing_envelope_id_fails_that_caller_alone(callers: Callers, upstream: BatchUpstream) -> None:
    calls = [{"body": {"n": i, "drop": i == 2}} for i in range(5)]
    _, responses = one_batch(callers, upstream, "env_drop", calls)
    for i, response in enumerate(responses):
        if i == 2:
            assert "missing_item_result" in error_of(response, 502, "missing_item_result")["reason"]
        else:
            assert response.status_code == 201 and response.json()["echo"]["n"] == i
    assert_batch_headers(responses, 5)


def test_a_bad_envelope_status_fails_that_caller_alone(callers: Callers, upstream: BatchUpstream) -> None:
    _, responses = one_batch(callers, upstream, "env_bad", [{"body": {"n": i, "bad": i == 0}} for i in range(3)])
    error_of(responses[0], 502, "bad_item_status")
    assert [r.status_code for r in responses[1:]] == [201, 201]


@pytest.mark.parametrize(("item", "reason"), [
    ({"status": 100}, "bad_item_status"),  # a 1xx is not a final answer: the caller would wait for another
    ({"status": 101}, "bad_item_status"),
    ({"status": 200, "headers": {"x-evil": "a\r\nx-injected: yes"}}, "bad_item_headers"),  # response splitting
    ({"status": 200, "headers": {"x-evil": "a\nb"}}, "bad_item_headers"),
    ({"status": 200, "headers": {"x-nul": "a\u0000b"}}, "bad_item_headers"),
    ({"status": 200, "headers": {"bad name": "v"}}, "bad_item_headers"),
    ({"status": 200, "headers": {"x-split\r\nx-injected": "v"}}, "bad_item_headers"),
    ({"status": 200, "headers": {"": "v"}}, "bad_item_headers"),
    ({"status": 200, "headers": {"x-list": ["a", "b"]}}, "bad_item_headers"),
])
def test_an_unsafe_envelope_item_fails_that_caller_alone(callers: Callers, upstream: BatchUpstream,
                                                        item: dict[str, Any], reason: str) -> None:
    _, (good, bad) = one_batch(callers, upstream, "env_ok", [{"body": {"n": 0}}, {"body": {"n": 1, **item}}])
    assert good.status_code == 201 and good.json()["echo"] == {"n": 0}
    body = error_of(bad, 502, reason)
    assert body["detail"]
    assert "x-injected" not in bad.headers and "x-injected" not in good.headers
    assert_batch_headers([good, bad], 2)


def test_envelope_item_headers_cannot_forge_the_proxys_own(callers: Callers, upstream: BatchUpstream) -> None:
    headers = {"x-meshbatch-flush": "fake", "x-meshbatch-batch-size": "99", "x-fine": "kept", "x-num": 7,
               "Set-Cookie": "a=1", "Connection": "close", "Transfer-Encoding": "chunked"}
    _, (response,) = one_batch(callers, upstream, "env_ok", [{"body": {"status": 200, "headers": headers}}])
    assert response.status_code == 200
    assert response.headers.get_list("x-meshbatch-flush") == ["wait"]
    assert response.headers.get_list("x-meshbatch-batch-size") == ["1"]
    assert response.headers["x-fine"] == "kept" and response.headers["x-num"] == "7"
    assert response.headers["set-cookie"] == "a=1"
    assert "transfer-encoding" not in response.headers
    assert response.json()["echo"]["status"] == 200


def test_a_callers_bad_body_is_400_for_it_alone_and_never_sent(callers: Callers, upstream: BatchUpstream) -> None:
    before = callers.metric("meshbatch_batch_rejections_total", route="ja", reason="invalid_body")
    calls: list[dict[str, Any]] = [{"body": {"good": i}} for i in range(3)]
    calls.insert(1, {"content": b'{"broken": ', "headers": {"content-type": "application/json"}})
    calls.append({"content": b"\xff\xfe not json", "headers": {"content-type": "application/octet-stream"}})
    _, responses = one_batch(callers, upstream, "ja", calls, queued=3)
    for index in (1, 4):
        assert "not valid JSON" in error_of(responses[index], 400, "invalid_body")["detail"]
        assert "x-meshbatch-batch-id" not in responses[index].headers
    good = [r for i, r in enumerate(responses) if i not in (1, 4)]
    assert [r.json()["echo"] for r in good] == [{"good": 0}, {"good": 1}, {"good": 2}]
    assert_batch_headers(good, 3)
    assert sorted(upstream.items(), key=str) == sorted([{"plug": True}, {"good": 0}, {"good": 1}, {"good": 2}],
                                                       key=str)
    assert callers.metric("meshbatch_batch_rejections_total", route="ja", reason="invalid_body") == before + 2


def test_an_envelope_carries_text_but_not_bytes_or_broken_json(callers: Callers, upstream: BatchUpstream) -> None:
    bad_json = callers.call("/env/x", content=b"{nope", headers={"content-type": "application/json"})
    error_of(bad_json, 400, "invalid_body")
    binary = callers.call("/env/x", content=b"\xff\x00\x01", headers={"content-type": "application/octet-stream"})
    error_of(binary, 400, "invalid_body")
    empty = callers.call("/env/x", content=b"", headers={"content-type": "application/json"})
    assert empty.status_code == 201 and empty.json()["echo"] is None
    assert upstream.snapshot()[0].requests[0].get("body") is None


@pytest.mark.parametrize(("headers", "status", "reason"), [
    ({"x-meshbatch-priority": "urgent"}, 400, "bad_priority"),
    ({"x-meshbatch-deadline-ms": "soon"}, 400, "bad_deadline"),
    ({"x-meshbatch-deadline-ms": "nan"}, 400, "bad_deadline"),
    ({"x-meshbatch-deadline-ms": "0"}, 504, "deadline_exceeded"),
    ({"x-meshbatch-deadline-ms": "-5"}, 504, "deadline_exceeded"),
])
def test_bad_control_headers_are_answered_at_once(callers: Callers, upstream: BatchUpstream,
                                                   headers: dict[str, str], status: int, reason: str) -> None:
    before = callers.metric("meshbatch_batch_rejections_total", route="ja", reason=reason)
    error_of(callers.call("/ja/x", {"a": 1}, headers=headers), status, reason)
    assert upstream.snapshot() == []
    assert callers.metric("meshbatch_batch_rejections_total", route="ja", reason=reason) == before + 1


def test_upstream_timeout_and_refused_reach_every_caller(callers: Callers, upstream: BatchUpstream) -> None:
    slow = [callers.post("/slow/x", {"i": i}) for i in range(3)]
    for future in slow:
        response = future.result(10)
        assert response.status_code == 504, response.text
        assert response.elapsed.total_seconds() < 2.5, "the route timeout (300 ms) bounds the wait"
    dead = [callers.post("/dead/x", {"i": i}) for i in range(3)]
    for future in dead:
        response = future.result(10)
        assert response.status_code == 503, response.text
        assert response.json()["reason"]
