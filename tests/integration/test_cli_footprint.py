"""A proxy imports only what its config uses: `meshbatch run` of a plain config, a request through it, then the
modules the process imported in its whole life (`--print-modules`, printed at exit). None of the optional parts'
libraries (database and queue clients, Kubernetes, OpenTelemetry, plotting, the demo's server) is among them."""

from __future__ import annotations

from pathlib import Path

import httpx

from testbed.config import simple
from testbed.proxy import MeshbatchProcess, write_config
from testbed.upstream import UpstreamServer

NEVER_FOR_A_PLAIN_PROXY = (
    "asyncpg", "nats", "kubernetes_asyncio", "matplotlib", "numpy", "opentelemetry", "uvicorn", "aiohttp",
    # and the extensions the config does not name: other discovery sources, sinks, logs, pipeline stages, tracing
    "dns", "jsonschema", "re2", "meshbatch.discovery.kubernetes", "meshbatch.discovery.dns",
    "meshbatch.ingest.sinks.postgres", "meshbatch.ingest.logs.jetstream", "meshbatch.pipeline.stages.validate",
    "meshbatch.telemetry.tracing", "meshbatch.demo", "meshbatch.k8s.render",
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
