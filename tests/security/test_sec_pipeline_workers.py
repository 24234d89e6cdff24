"""Pipeline worker processes behind a real proxy: the CPU budget answered 413 by the proxy itself, a worker killed
mid-request costs that request only (503), a flood beyond the queue is answered at once (503 + Retry-After),
every request gets exactly one answer, and the workers go away with the proxy."""

from __future__ import annotations

import gzip
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from testbed.config import cluster, config, listener
from testbed.proxy import MeshbatchProcess
from testbed.upstream import UpstreamServer

NDJSON_GZIP = {"content-type": "application/x-ndjson", "content-encoding": "gzip"}
SCHEMA = {"type": "object", "required": ["t"], "properties": {"t": {"type": "integer"}}}


def pipeline(limits: dict[str, Any]) -> dict[str, Any]:
    return {"pipeline": ["decompress", {"decode": {"format": "ndjson", "max_events": 1_000_000}},
                         {"validate": {"schema": SCHEMA}}, {"filter": "t < 0"}],
            "pipeline_limits": limits, "batch": {"max_items": 8, "upstream_path": "/batch"}}


@pytest.fixture(scope="module")
def echo() -> Iterator[UpstreamServer]:
    server = UpstreamServer("echo").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, echo: UpstreamServer) -> MeshbatchProcess:
    routes = [
        {"name": "budget", "match": {"path_prefix": "/budget"}, "cluster": "echo", **pipeline({"max_cpu_ms": 50})},
        {"name": "long", "match": {"path_prefix": "/long"}, "cluster": "echo", **pipeline({"max_cpu_ms": 60_000})},
        {"name": "flood", "match": {"path_prefix": "/flood"}, "cluster": "echo",
         # a long queue wait: the three admitted are served however slowly a loaded machine decodes them
         **pipeline({"max_cpu_ms": 60_000, "max_queue": 2, "max_queue_ms": 120_000})},
    ]
    process: MeshbatchProcess = module_mesh.start(config([listener("main", routes)], [cluster("echo", echo.address)]),
                                                  "workers.yaml")
    return process


def events(n: int) -> bytes:
    return gzip.compress(b'{"t": 1}\n' * n, 6)


def workers_of(proxy: MeshbatchProcess) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(proxy.proc.pid), "-f", "meshbatch.pipeline.worker"],
                         capture_output=True, text=True, check=False).stdout
    return sorted(int(pid) for pid in out.split())


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def busiest(pids: list[int]) -> int:
    """The worker that is computing (its CPU time grows), among idle ones."""
    first = {pid: cpu_ticks(pid) for pid in pids}
    time.sleep(0.3)
    return max(pids, key=lambda pid: cpu_ticks(pid) - first[pid])


def metric(proxy: MeshbatchProcess, pattern: str) -> float:
    text = httpx.get(proxy.url("admin", "/metrics"), timeout=10).text
    match = re.search(pattern + r" ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_a_request_over_the_cpu_budget_is_answered_413_and_the_next_one_is_served(proxy: MeshbatchProcess) -> None:
    response = httpx.post(proxy.url("main", "/budget"), content=events(200_000), headers=NDJSON_GZIP, timeout=60)
    assert response.status_code == 413
    assert response.json()["reason"] == "pipeline_cpu_exceeded" and "50 ms" in response.json()["detail"]
    small = httpx.post(proxy.url("main", "/budget"), content=events(10), headers=NDJSON_GZIP, timeout=60)
    assert small.status_code == 204  # validated, then filtered out, in the same worker
    assert metric(proxy, r'meshbatch_pipeline_runs_total\{route="budget",where="worker"\}') >= 2


def test_a_worker_killed_mid_request_costs_that_request_only(proxy: MeshbatchProcess) -> None:
    answers: list[httpx.Response] = []
    sender = threading.Thread(target=lambda: answers.append(httpx.post(
        proxy.url("main", "/long"), content=events(800_000), headers=NDJSON_GZIP, timeout=120)))
    sender.start()
    deadline = time.monotonic() + 60
    while metric(proxy, r'meshbatch_pipeline_workers\{route="long",state="busy"\}') < 1:
        assert time.monotonic() < deadline, "the worker never took the request"
        time.sleep(0.05)
    others = workers_of(proxy)
    victim = busiest(others)
    os.kill(victim, signal.SIGKILL)
    sender.join(120)
    assert answers and answers[0].status_code == 503
    assert answers[0].json()["reason"] == "pipeline_worker_lost"
    after = httpx.post(proxy.url("main", "/long"), content=events(10), headers=NDJSON_GZIP, timeout=60)
    assert after.status_code == 204
    assert metric(proxy, r'meshbatch_pipeline_worker_restarts_total\{cause="lost",route="long"\}') == 1
    assert set(others) - {victim} <= set(workers_of(proxy))  # the other routes' workers were not touched


def test_a_flood_beyond_the_queue_is_answered_at_once_and_every_request_once(proxy: MeshbatchProcess) -> None:
    def send(_: int) -> httpx.Response:
        return httpx.post(proxy.url("main", "/flood"), content=events(30_000), headers=NDJSON_GZIP, timeout=120)

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(send, range(12)))
    statuses = sorted(a.status_code for a in answers)
    assert len(answers) == 12 and set(statuses) <= {204, 503}, statuses
    refused = [a for a in answers if a.status_code == 503]
    assert refused, "one worker and a queue of 2 cannot take 12 requests at once"
    assert all(a.json()["reason"] == "pipeline_overloaded" and a.headers["retry-after"] == "1" for a in refused)
    assert statuses.count(204) >= 3  # the idle worker's request and the two the queue holds


def test_workers_stop_with_the_proxy(mesh: Any, echo: UpstreamServer) -> None:
    proxy = mesh.start(config([listener("main", [{"name": "p", "cluster": "echo", **pipeline({})}])],
                              [cluster("echo", echo.address)]))
    deadline = time.monotonic() + 30
    while not workers_of(proxy):
        assert time.monotonic() < deadline, "the worker did not start with the proxy"
        time.sleep(0.05)
    pids = workers_of(proxy)
    assert proxy.terminate(timeout=30) == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
