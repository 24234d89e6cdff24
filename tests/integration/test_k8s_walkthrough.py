"""The walk-through of docs/kubernetes.md rehearsed on one machine: the proxy runs with the very config of
deploy/kubernetes/microbatching.yaml (only its listen addresses moved to loopback and a kubeconfig added), finds
a real consumer process through the `consumer-headless` EndpointSlices of an in-process API server, and the
seed's check, `curl -H "Host: service" http://localhost:8080`, goes through it; events are batched."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.fleet import free_port
from testbed.k8s_api import FakeKubernetes, endpoint, endpoint_slice
from testbed.k8s_validate import documents

ROOT = Path(__file__).resolve().parents[2]
CURL = shutil.which("curl")
pytestmark = pytest.mark.skipif(CURL is None, reason="curl is not installed")


@pytest.fixture
def consumer(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "meshbatch.demo.consumer", "--host", "127.0.0.1", "--port",
                             str(port), "--database", f"sqlite:///{tmp_path / 'events.db'}", "--replica",
                             "consumer-0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, env=dict(os.environ))
    deadline = time.monotonic() + 15
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "the consumer did not start"
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(10)


def curl(*args: str) -> tuple[dict[str, str], Any]:
    assert CURL is not None
    out = subprocess.run([CURL, "-si", "--max-time", "10", *args], capture_output=True, text=True, timeout=20,
                         check=True).stdout
    head, _, body = out.partition("\n\n")  # text mode: CRLF reads as LF
    lines = head.splitlines()
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    headers[":status"] = lines[0].split()[1]
    return headers, json.loads(body)


def test_the_seed_check_goes_through_the_proxy_to_a_discovered_consumer(mesh: Any, consumer: int,
                                                                       tmp_path: Path) -> None:
    manifest = (ROOT / "deploy/kubernetes/microbatching.yaml").read_text(encoding="utf-8")
    config_map = next(d for d in documents(manifest) if d["kind"] == "ConfigMap")
    config = yaml.safe_load(config_map["data"]["meshbatch.yaml"])
    api = FakeKubernetes().start()
    try:
        pod = endpoint("127.0.0.1", pod="consumer-0")
        api.apply(endpoint_slice("consumer-headless-x1", "consumer-headless", [pod],
                                 ports=[{"name": "http", "port": consumer, "protocol": "TCP"}]))
        config["admin"]["listen"] = "127.0.0.1:0"
        config["listeners"][0]["listen"] = "127.0.0.1:0"
        config["clusters"][0]["discovery"]["kubeconfig"] = str(api.kubeconfig(tmp_path / "kubeconfig"))
        proxy = mesh.start(config)
        host, port = proxy.address("ingress")
        deadline = time.monotonic() + 20  # the first set normally arrives before `ready`; a busy machine may lag
        while not json.loads(urllib.request.urlopen(proxy.url("admin", "/clusters"), timeout=5).read())[
                "clusters"][0]["endpoints"]:
            assert time.monotonic() < deadline, "no endpoint discovered"
            time.sleep(0.05)

        headers, body = curl("-H", "Host: service", f"http://{host}:{port}")  # the seed's check
        assert headers[":status"] == "200" and headers["via"] == "1.1 meshbatch"
        assert body["service"] == "consumer" and body["replica"] == "consumer-0"

        headers, body = curl("-H", "Host: service", "-H", "content-type: application/json",
                             f"http://{host}:{port}/events", "-d", '{"id": "hello", "run": "curl"}')
        assert headers[":status"] == "200" and headers["x-meshbatch-batch-size"] == "1"
        assert body == {"stored": "hello", "replica": "consumer-0"}
        _, stats = curl("-H", "Host: service", f"http://{host}:{port}")
        assert stats["batch_requests"] == 1 and stats["batched_items"] == 1 and stats["single_requests"] == 0
    finally:
        api.stop()
