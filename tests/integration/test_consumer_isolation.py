"""A real curl through `meshbatch run` to the consumer SDK on uvicorn: one caller's bad body never fails the
callers batched with it, and a JSON body is JSON whatever content type curl gave it.

Four curls run at once against a route that holds its batch until four items are queued (`min_wait_ms` long,
`max_items: 4`), so they share one batch: `curl -d '{"sku": ...}'` (curl's default form content type), the
same with `application/json`, a real form body `sku=C3` (not JSON: the envelope carries it as a string, on
which the SDK's documented example handler raises), and a JSON body the handler refuses with an ItemError.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest

from meshbatch.consumer import ItemError, asgi_app
from testbed.asgi_server import AsgiServer
from testbed.config import cluster, config, listener
from testbed.proxy import MeshbatchProcess

SEEN: list[list[Any]] = []


async def store(orders: list[Any]) -> list[Any]:
    """The consumer SDK's documented example: `order.get` raises on an item that is not an object."""
    SEEN.append(list(orders))
    return [{"stored": order["sku"]} if order.get("sku") else ItemError(422, {"error": "sku missing"})
            for order in orders]


def batch_route(name: str, codec: str) -> dict[str, Any]:
    return {"name": name, "match": {"path_prefix": f"/{name}"}, "cluster": name, "timeout_ms": 10_000,
            "batch": {"codec": codec, "max_items": 4, "min_wait_ms": 8000, "max_wait_ms": 8000,
                      "max_in_flight": 1, "upstream_path": "/orders/batch"}}


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, AsgiServer]]:
    started = {codec: AsgiServer(asgi_app(store, codec=codec, path="/orders/batch")).start()
               for codec in ("envelope", "json-array")}
    yield started
    for server in started.values():
        server.stop()


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, servers: dict[str, AsgiServer]) -> MeshbatchProcess:
    routes = [batch_route("env", "envelope"), batch_route("ja", "json-array")]
    clusters = [cluster("env", servers["envelope"].address), cluster("ja", servers["json-array"].address)]
    process: MeshbatchProcess = module_mesh.start(config([listener("main", routes)], clusters))
    return process


def curl(url: str, *args: str) -> tuple[int, dict[str, str], Any]:
    out = subprocess.run(["curl", "-sS", "-i", "--max-time", "15", *args, url], capture_output=True, check=True,
                         timeout=20)
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, orjson.loads(body)


CALLS = {
    "form-json": ("-d", '{"sku": "A1"}'),  # curl's default: application/x-www-form-urlencoded
    "json": ("-H", "content-type: application/json", "-d", '{"sku": "B2"}'),
    "form": ("-d", "sku=C3"),  # a real form body
    "refused": ("-H", "content-type: application/json", "-d", '{"note": "no sku"}'),
}


def one_batch(proxy: MeshbatchProcess, route: str, calls: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = {name: pool.submit(curl, proxy.url("main", f"/{route}/orders"), *args)
                   for name, args in calls.items()}
        return {name: future.result(30) for name, future in futures.items()}


def test_envelope_one_bad_item_fails_alone(proxy: MeshbatchProcess) -> None:
    answers = one_batch(proxy, "env", CALLS)
    for _, headers, _ in answers.values():
        assert headers["x-meshbatch-batch-size"] == "4" and headers["x-meshbatch-flush"] == "items"
    assert answers["form-json"][0] == 200 and answers["form-json"][2] == {"stored": "A1"}, \
        "a JSON body under curl's default content type is JSON"
    assert answers["json"][0] == 200 and answers["json"][2] == {"stored": "B2"}
    assert answers["refused"][0] == 422 and answers["refused"][2] == {"error": "sku missing"}
    status, _, body = answers["form"]
    assert status == 500, "the item the handler raised on gets its own error, not its neighbours"
    assert body == {"error": "internal server error", "reason": "item_failed",
                    "detail": "AttributeError in the handler"}
    assert ["sku=C3"] in SEEN, "the form body reached the handler as text, alone after isolation"


def test_json_array_reads_the_same_bodies_the_same_way(proxy: MeshbatchProcess) -> None:
    calls = {name: args for name, args in CALLS.items() if name != "form"}
    calls["json-2"] = ("-d", '{"sku": "D4"}')
    answers = one_batch(proxy, "ja", calls)
    assert {name: (a[0], a[1]["x-meshbatch-batch-size"]) for name, a in answers.items()} == {
        "form-json": (200, "4"), "json": (200, "4"), "refused": (200, "4"), "json-2": (200, "4")}
    assert answers["form-json"][2] == {"stored": "A1"} and answers["json-2"][2] == {"stored": "D4"}
    assert answers["refused"][2] == {"status": 422, "error": {"error": "sku missing"}}
    status, _, body = curl(proxy.url("main", "/ja/orders"), "-d", "sku=C3")
    assert status == 400 and body["reason"] == "invalid_body", "json-array carries only JSON: refused at the door"
