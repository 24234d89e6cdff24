"""Tracing end to end through `meshbatch run`: W3C traceparent in and out, a SERVER span per caller, a CLIENT span
per upstream batch linked to its members, to a JSON-lines file and to a real OTLP/HTTP receiver."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from testbed.batch_upstream import BatchUpstream, Callers, Plug, batch_route, wait_until
from testbed.config import cluster, config, listener, route
from testbed.proxy import MeshbatchProcess
from testbed.upstream import UpstreamServer

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def traceparent(n: int) -> str:
    return f"00-{TRACE}-{n:016x}-01"


def spans_in(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def hex_id(value: str) -> str:
    return value.removeprefix("0x")


@pytest.fixture(scope="module")
def batch_upstream() -> Iterator[BatchUpstream]:
    server = BatchUpstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def traced(module_mesh: Any, batch_upstream: BatchUpstream, upstreams: dict[str, UpstreamServer],
           tmp_path_factory: pytest.TempPathFactory) -> tuple[MeshbatchProcess, Path]:
    spans = tmp_path_factory.mktemp("spans") / "spans.jsonl"
    routes = [batch_route("ja", "/ja/", "/b/json-array/ok"), batch_route("env", "/env/", "/b/envelope/ok"),
              batch_route("replay", "/replay/", "/b/json-array/ok", dedup_window_ms=60_000),
              route("plain", "echo", {"path_prefix": "/plain/"}),
              {"name": "ev", "match": {"path_prefix": "/ev/"}, "timeout_ms": 5000,
               "ingest": {"ack": "delivered", "log": {"path": str(spans.parent / "ev-log.db")},
                          "sink": {"type": "sqlite", "path": str(spans.parent / "ev-sink.db")}}}]
    cfg = config([listener("main", routes)], [cluster("batch", batch_upstream.address),
                                              cluster("echo", upstreams["a"].address)])
    cfg["tracing"] = {"exporter": "file", "path": str(spans), "export_interval_ms": 50, "service_name": "mesh-test"}
    return module_mesh.start(cfg), spans


def wait_spans(path: Path, predicate: Any, message: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = wait_until(lambda: (s := spans_in(path)) and predicate(s) and s, 10, message)
    return found


@pytest.mark.parametrize(("route_name", "prefix"), [("ja", "/ja/"), ("env", "/env/")])
def test_a_batch_span_links_its_members_and_reaches_the_upstream(
        traced: tuple[MeshbatchProcess, Path], batch_upstream: BatchUpstream, route_name: str, prefix: str) -> None:
    proxy, path = traced
    batch_upstream.reset()
    base = 0x1000 if route_name == "ja" else 0x2000
    with Callers(proxy.url("main"), proxy.admin_url) as callers:
        with Plug(callers, batch_upstream, prefix + "plug", route_name,
                  headers={"traceparent": traceparent(base)}):
            futures: list[Future[Any]] = [callers.post(f"{prefix}{i}", {"i": i},
                                                       headers={"traceparent": traceparent(base + 1 + i)})
                                          for i in range(3)]
            callers.wait_queued(route_name, 3)
        status = 201 if route_name == "env" else 200  # the envelope test upstream answers items with 201
        assert [f.result(10).status_code for f in futures] == [status] * 3
    parents = {f"{base + 1 + i:016x}" for i in range(3)}
    spans = wait_spans(path, lambda s: sum(1 for x in s if hex_id(x["parent_id"] or "") in parents) == 3 and any(
        x["kind"] == "SpanKind.CLIENT" and x["attributes"].get("meshbatch.route") == route_name
        and x["attributes"].get("meshbatch.batch.size") == 3 for x in s), "the spans of a batch of 3")
    servers = [s for s in spans if hex_id(s["parent_id"] or "") in parents]
    assert {s["kind"] for s in servers} == {"SpanKind.SERVER"}
    assert {hex_id(s["context"]["trace_id"]) for s in servers} == {TRACE}  # the callers' trace continues
    assert {s["name"] for s in servers} == {f"POST {route_name}"}
    assert all(s["resource"]["attributes"]["service.name"] == "mesh-test" for s in servers)
    batch = next(s for s in spans if s["kind"] == "SpanKind.CLIENT" and s["attributes"]["meshbatch.route"] == route_name
                 and s["attributes"]["meshbatch.batch.size"] == 3)
    assert batch["parent_id"] is None and hex_id(batch["context"]["trace_id"]) != TRACE
    assert {hex_id(link["context"]["span_id"]) for link in batch["links"]} == \
        {hex_id(s["context"]["span_id"]) for s in servers}
    batch_id = batch["attributes"]["meshbatch.batch.id"]
    assert {s["attributes"]["meshbatch.batch.id"] for s in servers} == {batch_id}
    # The batch request names the batch span; envelope items also carry their own caller's span.
    received = batch_upstream.snapshot()[-1]
    assert received.size == 3
    assert received.headers["traceparent"] == \
        f"00-{hex_id(batch['context']['trace_id'])}-{hex_id(batch['context']['span_id'])}-01"
    if route_name == "env":
        item_parents = {entry["headers"]["traceparent"].split("-")[2] for entry in received.requests}
        assert item_parents == {hex_id(s["context"]["span_id"]) for s in servers}


def test_dedup_joiners_are_linked_to_the_batch_span_queued_or_in_flight(traced: tuple[MeshbatchProcess, Path],
                                                                        batch_upstream: BatchUpstream) -> None:
    proxy, path = traced
    batch_upstream.reset()
    shared = {"idempotency-key": "joined"}
    with Callers(proxy.url("main"), proxy.admin_url) as callers:
        joins = callers.batcher("ja")["dedup_shared"]
        # the creator and a joiner queue behind the plug; then only the plug goes through: the shared item's
        # batch stays in flight for a third caller to join it there
        with Plug(callers, batch_upstream, "/ja/plug", "ja", release_all=False):
            first = callers.post("/ja/d", {"d": 1}, headers={**shared, "traceparent": traceparent(0x5001)})
            callers.wait_queued("ja", 1)  # the creator is queued before its joiner arrives
            queued = callers.post("/ja/d", {"d": 1}, headers={**shared, "traceparent": traceparent(0x5002)})
            wait_until(lambda: callers.batcher("ja")["dedup_shared"] == joins + 1, 5, "the queued join")
            batch_upstream.release(1)
        batch_upstream.wait_batches(2)
        late = callers.post("/ja/d", {"d": 1}, headers={**shared, "traceparent": traceparent(0x5003)})
        wait_until(lambda: callers.batcher("ja")["dedup_shared"] == joins + 2, 5, "the in-flight join")
        batch_upstream.release()
        answers = [f.result(10) for f in (first, queued, late)]
    assert {a.headers["x-meshbatch-batch-id"] for a in answers} == {answers[0].headers["x-meshbatch-batch-id"]}
    parents = {f"{0x5001 + i:016x}" for i in range(3)}
    batch_id = answers[0].headers["x-meshbatch-batch-id"]
    spans = wait_spans(path, lambda s: sum(1 for x in s if hex_id(x["parent_id"] or "") in parents) == 3 and any(
        x["kind"] == "SpanKind.CLIENT" and x["attributes"].get("meshbatch.batch.id") == batch_id for x in s),
        "the callers' spans and the batch span")
    servers = {hex_id(x["parent_id"]): hex_id(x["context"]["span_id"]) for x in spans
               if hex_id(x["parent_id"] or "") in parents}
    batch = next(x for x in spans
                 if x["kind"] == "SpanKind.CLIENT" and x["attributes"]["meshbatch.batch.id"] == batch_id)
    links = {hex_id(link["context"]["span_id"]): link["attributes"] for link in batch["links"]}
    assert set(links) == set(servers.values()), "one link per caller: the creator, a queued and an in-flight joiner"
    assert "meshbatch.dedup" not in links[servers[f"{0x5001:016x}"]]
    for parent in (0x5002, 0x5003):
        assert links[servers[f"{parent:016x}"]] == {"meshbatch.item.index": 0, "meshbatch.dedup": True}


def test_an_ingest_delivery_span_links_the_requests_of_its_events(traced: tuple[MeshbatchProcess, Path]) -> None:
    import httpx

    proxy, path = traced
    parents = {f"{0x6001 + i:016x}" for i in range(3)}
    for i in range(3):  # ack delivered: each answer comes once its delivery is done
        response = httpx.post(proxy.url("main", f"/ev/{i}"), json={"e": i},
                              headers={"traceparent": traceparent(0x6001 + i)})
        assert response.status_code == 202, response.text
    spans = wait_spans(path, lambda s: sum(1 for x in s if hex_id(x["parent_id"] or "") in parents) == 3 and sum(
        len(x["links"]) for x in s if x["name"] == "deliver ev") >= 3, "the requests' and deliveries' spans")
    servers = {hex_id(x["context"]["span_id"]) for x in spans if hex_id(x["parent_id"] or "") in parents}
    deliveries = [x for x in spans if x["name"] == "deliver ev"]
    assert {x["kind"] for x in deliveries} == {"SpanKind.CLIENT"}
    assert all(x["parent_id"] is None for x in deliveries)  # each the root of its own trace
    linked = {hex_id(link["context"]["span_id"]) for x in deliveries for link in x["links"]}
    assert servers <= linked, "every event's delivery links to the span of the request that brought it"
    assert sum(x["attributes"]["meshbatch.ingest.stored"] for x in deliveries) >= 3
    assert all(x["attributes"]["meshbatch.ingest.failed"] == 0 for x in deliveries)


def test_a_replayed_answer_names_the_batch_that_served_it(traced: tuple[MeshbatchProcess, Path],
                                                          batch_upstream: BatchUpstream) -> None:
    proxy, path = traced
    batch_upstream.reset()
    with Callers(proxy.url("main"), proxy.admin_url) as callers:
        key = {"idempotency-key": "trace-replay"}
        first = callers.call("/replay/x", {"r": 1}, headers={**key, "traceparent": traceparent(0x4001)})
        again = callers.call("/replay/x", {"r": 1}, headers={**key, "traceparent": traceparent(0x4002)})
    assert first.status_code == again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert len(batch_upstream.snapshot()) == 1
    parents = {f"{0x4001:016x}": "first", f"{0x4002:016x}": "again"}
    spans = wait_spans(path, lambda s: sum(1 for x in s if hex_id(x["parent_id"] or "") in parents) == 2,
                       "the two SERVER spans")
    server = {parents[hex_id(x["parent_id"])]: x for x in spans if hex_id(x["parent_id"] or "") in parents}
    batch_id = first.headers["x-meshbatch-batch-id"]
    assert server["first"]["attributes"]["meshbatch.batch.id"] == batch_id
    assert "meshbatch.replayed" not in server["first"]["attributes"]
    assert server["again"]["attributes"]["meshbatch.batch.id"] == batch_id
    assert server["again"]["attributes"]["meshbatch.replayed"] == "true"
    calls = [x for x in spans if x["kind"] == "SpanKind.CLIENT" and x["attributes"].get("meshbatch.route") == "replay"]
    assert len(calls) == 1, "the replay made no upstream call"


def test_a_plain_route_forwards_the_server_spans_context(traced: tuple[MeshbatchProcess, Path],
                                                         upstreams: dict[str, UpstreamServer]) -> None:
    import httpx

    proxy, path = traced
    upstream = upstreams["a"]
    response = httpx.get(proxy.url("main", "/plain/x"), headers={"traceparent": traceparent(0x3001)})
    assert response.status_code == 200
    spans = wait_spans(path, lambda s: any(hex_id(x["parent_id"] or "") == f"{0x3001:016x}" for x in s),
                       "the plain route's span")
    span = next(s for s in spans if hex_id(s["parent_id"] or "") == f"{0x3001:016x}")
    seen = [r for r in upstream.requests if r.target == "/plain/x"][-1]
    assert seen.header("traceparent") == f"00-{TRACE}-{hex_id(span['context']['span_id'])}-01"
    assert span["attributes"]["http.response.status_code"] == 200
    assert span["attributes"]["meshbatch.route"] == "plain"


class Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver: decodes each ExportTraceServiceRequest (protobuf) into the server's list."""

    def do_POST(self) -> None:  # the http.server API names it
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        body = self.rfile.read(int(self.headers["content-length"]))
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        server: Any = self.server
        with server.lock:
            server.received.append((self.path, self.headers.get("x-tenant"), message))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_spans_are_exported_over_otlp_http(mesh: Any, batch_upstream: BatchUpstream) -> None:
    import httpx

    collector: Any = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    collector.received, collector.lock = [], threading.Lock()
    thread = threading.Thread(target=collector.serve_forever, daemon=True)
    thread.start()
    try:
        cfg = config([listener("main", [batch_route("ja", "/ja/", "/b/json-array/ok")])],
                     [cluster("batch", batch_upstream.address)])
        endpoint = f"http://127.0.0.1:{collector.server_address[1]}/v1/traces"
        cfg["tracing"] = {"exporter": "otlp", "endpoint": endpoint, "headers": {"x-tenant": "t1"},
                          "export_interval_ms": 50}
        proxy = mesh.start(cfg)
        response = httpx.post(proxy.url("main", "/ja/1"), json={"a": 1}, headers={"traceparent": traceparent(0x4001)})
        assert response.status_code == 200

        def spans() -> list[Any]:
            with collector.lock:
                return [(path, tenant, span) for path, tenant, message in collector.received
                        for resource in message.resource_spans for scope in resource.scope_spans
                        for span in scope.spans]

        got = wait_until(lambda: len(spans()) >= 2 and spans(), 10, "two spans at the OTLP receiver")
        assert {(path, tenant) for path, tenant, _ in got} == {("/v1/traces", "t1")}
        server = next(span for _, _, span in got if span.parent_span_id == bytes.fromhex(f"{0x4001:016x}"))
        batch = next(span for _, _, span in got if span.links)
        assert server.trace_id.hex() == TRACE
        assert [link.span_id for link in batch.links] == [server.span_id]
    finally:
        collector.shutdown()
