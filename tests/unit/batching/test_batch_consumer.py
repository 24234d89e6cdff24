"""The consumer SDK over ASGI (httpx) and aiohttp, and end to end behind the batcher for every codec."""

import asyncio

import httpx
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from batching_support import header, make_handler, request, settle, submit

from meshbatch.consumer import ItemError, ItemResponse, aiohttp_handler, asgi_app, each
from meshbatch.http.message import Response


async def double(items):
    out = []
    for item in items:
        if item.get("bad"):
            out.append(ItemError(422, {"error": "bad item"}))
        elif item.get("created"):
            out.append(ItemResponse(201, {"id": item["n"]}, {"location": f"/orders/{item['n']}"}))
        else:
            out.append({"n": item["n"] * 2})
    return out


def client(app):
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://consumer")


async def test_json_array_over_asgi():
    async with client(asgi_app(double)) as http:
        response = await http.post("/batch", content=b'[{"n": 1}, {"n": 2}, {"bad": true}]')
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert response.json() == [{"n": 2}, {"n": 4}, {"status": 422, "error": {"error": "bad item"}}]


async def test_ndjson_over_asgi():
    async with client(asgi_app(double, codec="ndjson", path="/nd")) as http:
        response = await http.post("/nd", content=b'{"n": 1}\n\n{"n": 5}\n')
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.content == b'{"n":2}\n{"n":10}\n'


async def test_envelope_over_asgi_gives_per_item_status():
    body = {"requests": [{"id": "a", "method": "POST", "url": "/o", "body": {"n": 1}},
                         {"id": "b", "method": "POST", "url": "/o", "body": {"bad": True}},
                         {"id": "c", "method": "POST", "url": "/o", "body": {"n": 3, "created": True}}]}
    async with client(asgi_app(double, codec="envelope")) as http:
        response = await http.post("/batch", content=orjson.dumps(body))
    assert response.json() == {"responses": [
        {"id": "a", "status": 200, "body": {"n": 2}},
        {"id": "b", "status": 422, "body": {"error": "bad item"}},
        {"id": "c", "status": 201, "headers": {"location": "/orders/3"}, "body": {"id": 3}},
    ]}


@pytest.mark.parametrize(("codec", "body", "reason"), [
    ("json-array", b"{nope", "invalid_json"),
    ("json-array", b'{"a": 1}', "not_an_array"),
    ("ndjson", b'1\n{bad\n', "invalid_json"),
    ("envelope", b"[]", "not_an_envelope"),
    ("envelope", b'{"requests": [{"body": 1}]}', "missing_id"),
])
async def test_unreadable_batches_are_400(codec, body, reason):
    async with client(asgi_app(double, codec=codec)) as http:
        response = await http.post("/batch", content=body)
    assert response.status_code == 400 and response.json()["reason"] == reason


async def test_wrong_result_count_and_raising_handlers_are_500_never_misaligned():
    async def short(items):
        return items[:-1]

    async def broken(items):
        raise RuntimeError("db down")

    async def refuses(items):
        raise ItemError(503, {"error": "maintenance"})

    async with client(asgi_app(short, isolate=False)) as http:
        response = await http.post("/batch", content=b"[1, 2]")
        assert response.status_code == 500 and response.json()["reason"] == "handler_result_count"
    async with client(asgi_app(broken)) as http:
        response = await http.post("/batch", content=b"[1]")
        assert response.status_code == 500 and response.json()["reason"] == "handler_error"
    async with client(asgi_app(refuses)) as http:
        response = await http.post("/batch", content=b"[1]")
        assert response.status_code == 503 and response.json() == {"error": "maintenance"}


async def test_each_fails_only_the_raising_item_and_sync_handlers_work():
    async def one(item):
        if item == 0:
            raise ItemError(404)
        if item < 0:
            raise ValueError("negative")
        return item + 1

    async with client(asgi_app(each(one), codec="envelope")) as http:
        body = {"requests": [{"id": str(i), "body": v} for i, v in enumerate([1, 0, -1])]}
        response = await http.post("/batch", content=orjson.dumps(body))
    statuses = [(r["status"], r.get("body")) for r in response.json()["responses"]]
    assert statuses == [(200, 2), (404, {"error": "not found"}),
                        (500, {"error": "internal server error", "reason": "item_failed",
                               "detail": "ValueError in the item handler"})]
    async with client(asgi_app(lambda items: [len(items)] * len(items))) as http:
        assert (await http.post("/batch", content=b"[1,2]")).json() == [2, 2]


def counted(handle):
    calls = []

    async def wrapper(items):
        calls.append(list(items))
        return await handle(items)

    return wrapper, calls


async def store_orders(orders: list) -> list:  # the package docstring's example: a str item raises
    return [{"stored": order["sku"]} if order.get("sku") else ItemError(422, {"error": "sku missing"})
            for order in orders]


async def test_a_raising_handler_fails_only_the_item_at_fault_by_default():
    handle, calls = counted(store_orders)
    bodies = [{"sku": f"S{i}"} for i in range(16)]
    bodies[11] = "sku=A1"  # a form body that travelled as a string
    bodies[3] = {"nosku": 1}
    envelope = {"requests": [{"id": str(i), "method": "POST", "url": "/o", "body": b} for i, b in enumerate(bodies)]}
    async with client(asgi_app(handle, codec="envelope")) as http:
        response = await http.post("/batch", content=orjson.dumps(envelope))
    assert response.status_code == 200
    answers = {r["id"]: r for r in response.json()["responses"]}
    assert answers["11"]["status"] == 500
    assert answers["11"]["body"] == {"error": "internal server error", "reason": "item_failed",
                                     "detail": "AttributeError in the handler"}
    assert answers["3"]["status"] == 422, "an ItemError result keeps its status"
    assert all(answers[str(i)] == {"id": str(i), "status": 200, "body": {"stored": f"S{i}"}}
               for i in range(16) if i not in (3, 11))
    assert len(calls) == 1 + 2 * 4, "one call, then two halves per level down to the item (log2 16 = 4)"
    assert ["sku=A1"] in calls


async def test_isolation_over_json_array_and_wrong_lengths():
    async def flaky(items):
        if any(item < 0 for item in items):
            return items[:-1]  # a wrong length: that part failed as a whole
        return [item * 10 for item in items]

    async with client(asgi_app(flaky)) as http:
        response = await http.post("/batch", content=b"[1, 2, -3, 4, 5]")
    assert response.status_code == 200
    *good, bad = response.json()[:2] + response.json()[3:] + [response.json()[2]]
    assert good == [10, 20, 40, 50]
    assert bad["status"] == 500 and bad["error"]["reason"] == "item_failed"
    assert "returned 0" in bad["error"]["detail"]


async def test_isolation_off_fails_the_whole_batch_and_item_errors_raised_still_answer_the_batch():
    async with client(asgi_app(store_orders, isolate=False, codec="envelope")) as http:
        envelope = {"requests": [{"id": "1", "body": {"sku": "A"}}, {"id": "2", "body": "text"}]}
        response = await http.post("/batch", content=orjson.dumps(envelope))
    assert response.status_code == 500 and response.json()["reason"] == "handler_error"

    async def refuses(items):
        raise ItemError(503, {"error": "maintenance"})

    async with client(asgi_app(refuses)) as http:
        response = await http.post("/batch", content=b"[1, 2, 3]")
    assert response.status_code == 503, "an ItemError raised by the batch handler is meant for the whole batch"


async def test_a_result_without_a_json_form_fails_only_its_item():
    async def odd(items):
        return [object() if item == 2 else item for item in items]

    for isolate in (True, False):
        async with client(asgi_app(odd, isolate=isolate)) as http:
            response = await http.post("/batch", content=b"[1, 2, 3]")
        assert response.status_code == 200
        first, bad, third = response.json()
        assert (first, third) == (1, 3)
        assert bad["status"] == 500 and bad["error"]["reason"] == "result_not_json"


async def test_routing_methods_and_lifespan():
    app = asgi_app(double, path="/orders/batch")
    async with client(app) as http:
        assert (await http.post("/other", content=b"[]")).status_code == 404
        wrong = await http.get("/orders/batch")
        assert wrong.status_code == 405 and wrong.headers["allow"] == "POST, PUT"
    sent = []
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive():
        return next(messages)

    async def send(message):
        sent.append(message["type"])

    await app({"type": "lifespan"}, receive, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


async def test_item_error_and_response_validate_statuses():
    with pytest.raises(ValueError):
        ItemError(200)
    with pytest.raises(ValueError):
        ItemResponse(700)


async def test_aiohttp_handler_speaks_the_codecs():
    app = web.Application()
    app.router.add_post("/batch", aiohttp_handler(double))
    app.router.add_post("/env", aiohttp_handler(double, codec="envelope"))
    async with TestClient(TestServer(app)) as http:
        response = await http.post("/batch", data=b'[{"n": 21}]')
        assert response.status == 200 and await response.json() == [{"n": 42}]
        response = await http.post("/env", data=b'{"requests": [{"id": "1", "body": {"bad": true}}]}')
        assert (await response.json())["responses"][0]["status"] == 422
        response = await http.post("/batch", data=b"nope")
        assert response.status == 400


@pytest.mark.parametrize("codec", ["json-array", "ndjson", "envelope"])
async def test_batcher_and_sdk_agree_on_every_codec(codec):
    """The proxy's codec talking to the SDK's: each caller gets its own answer."""
    app = asgi_app(double, codec=codec, path="/orders/batch")
    http = client(app)

    async def send(method, path, headers, body, timeout, key):
        answer = await http.request(method.decode(), path.decode(), content=body,
                                    headers=[(k.decode(), v.decode()) for k, v in headers])
        return Response(answer.status_code, [(k.encode(), v.encode()) for k, v in answer.headers.items()],
                        answer.content)

    handler, _, _ = make_handler(upstream=send, codec=codec, upstream_path="/orders/batch")
    json_type = [(b"content-type", b"application/json")]
    bodies = [{"n": 1}, {"bad": True}, {"n": 3, "created": True}, {"n": 4}]
    tasks = [submit(handler, request(body, json_type)) for body in bodies]
    await settle()
    responses = await asyncio.wait_for(asyncio.gather(*tasks), 5)
    await http.aclose()
    assert {header(r, b"x-meshbatch-batch-size") for r in responses} == {b"4"}
    if codec == "envelope":
        assert [r.status for r in responses] == [200, 422, 201, 200]
        assert orjson.loads(responses[1].body) == {"error": "bad item"}
        assert header(responses[2], b"location") == b"/orders/3"
    else:
        assert [r.status for r in responses] == [200] * 4
        assert orjson.loads(responses[1].body) == {"status": 422, "error": {"error": "bad item"}}
    assert orjson.loads(responses[0].body) == {"n": 2} and orjson.loads(responses[3].body) == {"n": 8}


@pytest.mark.parametrize("codec", ["json-array", "ndjson", "envelope"])
async def test_numbers_beyond_64_bits_reach_the_handler_and_come_back_exact(codec):
    seen = []

    async def handle(items):
        seen.extend(items)
        return [{"id": item["id"] + 1, "f": item["f"]} for item in items]

    item = b'{"id": 123456789012345678901234567890, "f": -0.0}'
    body = {"json-array": b"[" + item + b"]", "ndjson": item + b"\n",
            "envelope": b'{"requests": [{"id": "1", "method": "POST", "url": "/", "body": ' + item + b"}]}"}[codec]
    async with client(asgi_app(handle, codec=codec)) as http:
        response = await http.post("/batch", content=body)
    assert seen == [{"id": 123456789012345678901234567890, "f": -0.0}] and type(seen[0]["id"]) is int
    assert b'{"id":123456789012345678901234567891,"f":-0.0}' in response.content


async def test_a_handler_that_fails_everything_fails_the_batch_after_few_calls():
    async def down(items):
        raise ConnectionRefusedError("the database is down")

    handle, calls = counted(down)
    async with client(asgi_app(handle)) as http:
        response = await http.post("/batch", content=orjson.dumps(list(range(64))))
    assert response.status_code == 500 and response.json()["reason"] == "handler_error"
    assert "on every part of the batch tried (6 calls)" in response.json()["detail"]
    assert len(calls) == 1 + 2 + 4, "the whole batch, its halves, its quarters: then it is the handler's failure"
    handle, calls = counted(down)
    async with client(asgi_app(handle)) as http:
        response = await http.post("/batch", content=b"[1, 2]")
    assert response.status_code == 500 and len(calls) == 3


async def test_two_bad_items_at_the_end_leave_the_others_their_results():
    async def picky(items):
        if any(item >= 14 for item in items):
            raise ValueError("too big")
        return [item + 100 for item in items]

    async with client(asgi_app(picky)) as http:
        answer = (await http.post("/batch", content=orjson.dumps(list(range(16))))).json()
    assert answer[:14] == [item + 100 for item in range(14)]
    assert [a["error"]["reason"] for a in answer[14:]] == ["item_failed", "item_failed"]
