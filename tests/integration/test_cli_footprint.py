"""A proxy imports only what its config uses: `meshbatch run` of a plain config, a request through it, then the
modules the process imported in its whole life (`--print-modules`, printed at exit). None of the optional parts'
libraries (database and queue clients, Kubernetes, OpenTelemetry, plotting, the demo's server) is among them, nor
the libraries of parts the config does not use: TLS certificates (cryptography), JWT, HTTP/2 (h2, until a connection
starts with the preface), Prometheus' exposition (until /metrics is scraped), urllib's client, nor the modules of
route kinds it does not have (batching, ingest, pipelines; docs/performance.md has what each costs in memory), nor
what validates the file: pydantic, the config models, the loader and its checks, PyYAML (a child process validates
it; the proxy reads the plain run-time classes, meshbatch.config.plain)."""

from __future__ import annotations

from pathlib import Path

import httpx

from testbed.config import simple
from testbed.proxy import MeshbatchProcess, write_config
from testbed.upstream import UpstreamServer

# What validates the file, in a child process (runtime/validation.py)
VALIDATION = ("pydantic", "pydantic_core", "annotated_types", "typing_inspection", "yaml", "meshbatch.config.model",
              "meshbatch.config.load", "meshbatch.config.checks", "meshbatch.config.notes", "meshbatch.config.source",
              "meshbatch.runtime.checks", "meshbatch.runtime.validate_child")
NEVER_FOR_A_PLAIN_PROXY = (
    "asyncpg", "nats", "kubernetes_asyncio", "matplotlib", "numpy", "opentelemetry", "uvicorn", "aiohttp",
    # and the extensions the config does not name: other discovery sources, sinks, logs, pipeline stages, tracing
    "dns", "jsonschema", "re2", "meshbatch.discovery.kubernetes", "meshbatch.discovery.dns",
    "meshbatch.ingest.sinks.postgres", "meshbatch.ingest.logs.jetstream", "meshbatch.pipeline.stages.validate",
    "meshbatch.telemetry.tracing", "meshbatch.demo", "meshbatch.k8s.render",
    # and the libraries of parts it does not use: TLS identities and the CA, JWT, HTTP/2, the metrics exposition
    "cryptography", "jwt", "h2", "hpack", "hyperframe", "prometheus_client", "urllib.request", "http.server",
    "meshbatch.security.ca", "meshbatch.security.tokens", "meshbatch.http2.server", "meshbatch.http2.client",
    # and the route kinds it does not have: the batcher and its codecs, ingest, pipelines, the tuner
    "meshbatch.batching.handler", "meshbatch.batching.codecs", "meshbatch.batching.dispatcher",
    "meshbatch.ingest.route", "meshbatch.ingest.flusher", "meshbatch.pipeline.runner", "meshbatch.tools.tune",
    "zstandard", "msgpack",
    # and what validates the file, in a child process (runtime/validation.py)
    *VALIDATION,
)


def imported(process: MeshbatchProcess) -> set[str]:
    line = process.wait_for_line("meshbatch: modules ", timeout=5)
    return set(line.split("meshbatch: modules ", 1)[1].split())


def test_a_plain_proxy_imports_no_optional_part(tmp_path: Path, upstream: UpstreamServer) -> None:
    path = write_config(tmp_path / "plain.yaml", simple(upstream.address))
    process = MeshbatchProcess(path, run_args=("--print-modules",))
    try:
        response = httpx.get(process.url("main", "/hello"), timeout=5)
        assert response.status_code == 200
    finally:
        assert process.terminate() == 0
    modules = imported(process)
    assert "meshbatch.runtime.app" in modules and "uvloop" in modules  # the line lists what ran
    loaded = sorted(m for m in modules for name in NEVER_FOR_A_PLAIN_PROXY if m == name or m.startswith(name + "."))
    assert loaded == [], f"a plain proxy imported {loaded}"


def test_a_config_imports_the_parts_it_names(tmp_path: Path, upstream: UpstreamServer) -> None:
    config = simple(upstream.address, tracing={"exporter": "file", "path": str(tmp_path / "spans.jsonl")})
    process = MeshbatchProcess(write_config(tmp_path / "traced.yaml", config), run_args=("--print-modules",))
    assert process.terminate() == 0
    modules = imported(process)
    assert "meshbatch.telemetry.tracing" in modules and "opentelemetry.sdk.trace" in modules
    assert "asyncpg" not in modules and "kubernetes_asyncio" not in modules


def test_http2_and_the_metrics_exposition_are_imported_when_first_used(tmp_path: Path,
                                                                        upstream: UpstreamServer) -> None:
    """`codec: auto` (the default) serves HTTP/2 from the first connection that starts with the preface, and the
    first scrape renders /metrics: each imports its library then, and works."""
    process = MeshbatchProcess(write_config(tmp_path / "plain.yaml", simple(upstream.address)),
                               run_args=("--print-modules",))
    try:
        with httpx.Client(http1=False, http2=True, timeout=5) as client:
            response = client.get(process.url("main", "/hello"))
        assert response.status_code == 200 and response.http_version == "HTTP/2"
        scrape = httpx.get(process.admin_url + "/metrics", timeout=5)
        assert scrape.status_code == 200 and scrape.headers["content-type"].startswith("text/plain")
        assert "meshbatch_requests_total" in scrape.text and "process_resident_memory_bytes" in scrape.text
    finally:
        assert process.terminate() == 0
    modules = imported(process)
    assert {"h2.connection", "meshbatch.http2.server", "prometheus_client"} <= modules
    assert "cryptography" not in modules and "jwt" not in modules
