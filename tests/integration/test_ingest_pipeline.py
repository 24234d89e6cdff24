"""The pipeline in front of a batching route, and an ingest route delivering to a cluster, against a real
upstream (uvicorn) that takes gzip-compressed batches: decompress, decode (NDJSON expands), validate, filter,
transform, compress of the outgoing batch; bad input answered 400/415/422 by the proxy itself."""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from test_ingest_services import wait_until

from meshbatch.ingest.record import key_of
from testbed.config import cluster, config, listener


class GzipBatchUpstream:
    """Answers a JSON-array batch (gzip or plain) with `{"got": item}` per item; records every batch."""

    def __init__(self) -> None:
        self.batches: list[tuple[dict[str, str], list[Any]]] = []
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.sock = sock
        self.address = f"127.0.0.1:{sock.getsockname()[1]}"
        server = uvicorn.Server(uvicorn.Config(self.app, log_level="error", lifespan="off", interface="asgi3"))
        self.server = server
        self.thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        if headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        if headers.get("content-type") == "application/json" and body.startswith(b"{"):  # envelope
            requests = orjson.loads(body)["requests"]
            self.batches.append((headers, requests))
            answer = orjson.dumps({"responses": [{"id": r["id"], "status": 201, "body": {"ok": True}}
                                                 for r in requests]})
        else:
            items = orjson.loads(body)
            self.batches.append((headers, items))
            answer = orjson.dumps([{"got": item} for item in items])
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": answer})


@pytest.fixture(scope="module")
def upstream() -> Iterator[GzipBatchUpstream]:
    server = GzipBatchUpstream()
    server.thread.start()
    wait_until(lambda: server.server.started, 10, "the upstream to start")
    yield server
    server.server.should_exit = True
    server.thread.join(10)


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, upstream: GzipBatchUpstream, tmp_path_factory: pytest.TempPathFactory) -> Any:
    log = tmp_path_factory.mktemp("ingest") / "orders.db"
    steps = [{"decompress": None}, {"decode": None},
             {"validate": {"schema": {"type": "object", "required": ["t"], "properties": {"t": {"type": "number"}}}}},
             {"filter": "t > 30"}, {"transform": {"add": {"via": "mesh"}, "drop": ["secret"]}},
             {"compress": {"encoding": "gzip", "min_bytes": 0}}]
    routes = [
        {"name": "readings", "match": {"path_prefix": "/readings"}, "cluster": "up", "pipeline": steps,
         "batch": {"max_items": 16, "upstream_path": "/batch"}},
        {"name": "keyed", "match": {"path_prefix": "/keyed"}, "cluster": "up",
         "pipeline": [{"decode": {"format": "ndjson"}}],
         "batch": {"max_items": 16, "upstream_path": "/batch", "dedup": True, "dedup_window_ms": 60_000}},
        {"name": "orders", "match": {"path_prefix": "/orders"}, "cluster": "up",
         "ingest": {"ack": "delivered", "log": {"path": str(log)},
                    "sink": {"codec": "envelope", "upstream_path": "/envelope"}},
         "pipeline": [{"decode": None}, {"compress": {"min_bytes": 0}}]},
    ]
    cfg = config([listener("main", routes)], [cluster("up", upstream.address)])
    return module_mesh.start(cfg, "pipeline.yaml")


def test_ndjson_gzip_request_is_expanded_filtered_transformed_and_sent_compressed(proxy: Any,
                                                                                  upstream: GzipBatchUpstream) -> None:
    upstream.batches.clear()
    lines = b'{"t": 35, "secret": 1}\n{"t": 10}\n{"t": 40}\n'
    response = httpx.post(proxy.url("main", "/readings"), content=gzip.compress(lines),
                          headers={"content-encoding": "gzip", "content-type": "application/x-ndjson"}, timeout=10)
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["body"]["got"] for r in results] == [{"t": 35, "via": "mesh"}, {"t": 40, "via": "mesh"}]
    items = [item for _, batch in upstream.batches for item in batch]  # one batch, or two if they were split
    assert all(headers["content-encoding"] == "gzip" for headers, _ in upstream.batches)
    assert sorted(item["t"] for item in items) == [35, 40], upstream.batches


def test_a_keyed_request_of_several_events_keeps_each_item_and_replays_them(proxy: Any,
                                                                           upstream: GzipBatchUpstream) -> None:
    """One idempotency-key on an NDJSON request of two different events: each event is its own item (not a
    clash of one key with two bodies), and the request sent again is answered from the replay window."""
    upstream.batches.clear()
    lines = b'{"n": 1}\n{"n": 2}\n'
    send = lambda: httpx.post(proxy.url("main", "/keyed"), content=lines,  # noqa: E731
                              headers={"idempotency-key": "batch-7"}, timeout=10)
    first = send()
    assert first.status_code == 200, first.text
    assert [r["body"]["got"] for r in first.json()["results"]] == [{"n": 1}, {"n": 2}]
    calls = len(upstream.batches)
    again = send()
    assert again.status_code == 200 and again.json() == first.json()
    assert len(upstream.batches) == calls  # replayed, not sent again


def test_single_events_and_filtered_ones(proxy: Any) -> None:
    url = proxy.url("main", "/readings")
    one = httpx.post(url, json={"t": 31}, timeout=10)
    assert one.status_code == 200 and one.json() == {"got": {"t": 31, "via": "mesh"}}
    dropped = httpx.post(url, json={"t": 1}, timeout=10)
    assert dropped.status_code == 204 and dropped.headers["x-meshbatch-filtered"] == "1"


@pytest.mark.parametrize(("body", "headers", "status", "reason"), [
    (gzip.compress(b'{"t": 40}', mtime=0)[:-6], {"content-encoding": "gzip"}, 400, "bad_encoding"),
    (b'{"t": 40}', {"content-encoding": "compress"}, 415, "unsupported_encoding"),
    (b'{"t": "hot"}', {}, 422, "schema_violation"),
    (b'{"t": 4', {}, 400, "invalid_json"),
])
def test_bad_input_is_answered_by_the_proxy(proxy: Any, body: bytes, headers: dict[str, str], status: int,
                                            reason: str) -> None:
    response = httpx.post(proxy.url("main", "/readings"), content=body, headers=headers, timeout=10)
    assert response.status_code == status
    assert response.json()["reason"] == reason
    metrics = httpx.get(proxy.url("admin", "/metrics"), timeout=5).text
    assert 'meshbatch_pipeline_events_total{result="failed",route="readings"' in metrics


def test_ingest_to_a_cluster_with_envelope_ids(proxy: Any, upstream: GzipBatchUpstream) -> None:
    upstream.batches.clear()
    response = httpx.post(proxy.url("main", "/orders"), json={"order": 1}, headers={"idempotency-key": "o-1"},
                          timeout=10)
    event_id = response.json()["id"]
    assert response.status_code == 202 and response.json() == {"id": event_id, "status": "delivered"}
    assert key_of(event_id) == "o-1"
    headers, requests = upstream.batches[-1]
    assert headers["content-encoding"] == "gzip"
    assert requests[0]["id"] == event_id and requests[0]["headers"]["idempotency-key"] == event_id
    assert requests[0]["body"] == {"order": 1}
