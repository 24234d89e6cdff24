"""One request must never hold the event loop: while hostile bodies go through a pipeline route, plain requests
to another route of the same proxy keep their p99 under 50 ms.

The hostile inputs: a 15 KB gzip NDJSON body of ten thousand tiny events through `validate` (half a second of
jsonschema), a 26-character value against the schema pattern `^(a+)+$` (seconds of backtracking in Python's
re), 8 MiB of newlines in 8 KB of gzip (a Python iteration per line), the costliest body a decode-only pipeline
decodes on the event loop (63 KB, 2,048 values, within `inline_decode_max_bytes` and `_values`: it moves to a
worker after `inline_slice_ms`); and a 2,000-term filter, which
`meshbatch check` and a reload now refuse (it used to pass check, then crash with RecursionError in run).
Attack and measurement run at the same time. The machine is shared: when plain requests alone (measured just
before) already have a p99 above 50 ms, the bound is twice that instead, and a measurement that misses it is
taken once more. Neither rescues a stalled loop: each hostile request used to hold it 0.5 to 2.3 s.
"""

from __future__ import annotations

import gzip
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from testbed.config import cluster, config, listener
from testbed.proxy import MeshbatchProcess
from testbed.upstream import UpstreamServer

# timed bars or heavy load: run alone, after the parallel part of `make test`
pytestmark = pytest.mark.serial

P99_LIMIT = 0.050
PLAIN_REQUESTS = 200
SCHEMA = {"type": "object", "required": ["t"], "additionalProperties": False,
          "properties": {"t": {"type": "integer", "minimum": 0}, "site": {"enum": ["eu", "us", "ap"]},
                         "id": {"type": "string", "pattern": "^[a-z0-9-]{1,64}$"}}}
NDJSON_GZIP = {"content-type": "application/x-ndjson", "content-encoding": "gzip"}


def routes() -> list[dict[str, Any]]:
    batch = {"max_items": 64, "upstream_path": "/batch"}
    return [
        {"name": "plain", "match": {"path_prefix": "/plain"}, "cluster": "echo"},
        {"name": "validate", "match": {"path_prefix": "/validate"}, "cluster": "echo", "batch": batch,
         "pipeline": ["decompress", {"decode": {"format": "ndjson"}}, {"validate": {"schema": SCHEMA}},
                      {"filter": "t < 0"}]},  # everything validated, then dropped: the cost is the pipeline's
        {"name": "pattern", "match": {"path_prefix": "/pattern"}, "cluster": "echo", "batch": batch,
         "pipeline": ["decode", {"validate": {"schema": {"properties": {"name": {"pattern": "^(a+)+$"}}}}}]},
        {"name": "lines", "match": {"path_prefix": "/lines"}, "cluster": "echo", "batch": batch,
         "pipeline": ["decompress", {"decode": {"format": "ndjson"}}]},
        # decode only: bodies within inline_decode_max_bytes and _values are decoded on the event loop
        {"name": "decoded", "match": {"path_prefix": "/decoded"}, "cluster": "echo", "batch": batch,
         "pipeline": [{"decode": {"format": "ndjson"}}]},
    ]


@pytest.fixture(scope="module")
def echo() -> Iterator[UpstreamServer]:
    server = UpstreamServer("echo").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, echo: UpstreamServer) -> MeshbatchProcess:
    process: MeshbatchProcess = module_mesh.start(config([listener("main", routes())],
                                                         [cluster("echo", echo.address)]), "stall.yaml")
    return process


def tiny_events() -> bytes:
    rng = random.Random(7)
    return gzip.compress(b"".join(b'{"t":%d}\n' % rng.randrange(300) for _ in range(10_000)), 9)  # 16 KB


ATTACKS: dict[str, tuple[str, Callable[[], bytes], dict[str, str], set[int]]] = {
    # name: (path, body, headers, the statuses it may get: each is answered by the proxy itself)
    "validate": ("/validate", tiny_events, NDJSON_GZIP, {204, 413}),
    "pattern": ("/pattern", lambda: b'{"name": "' + b"a" * 26 + b'!"}', {"content-type": "application/json"}, {422}),
    "newlines": ("/lines", lambda: gzip.compress(b"\n" * (8 << 20), 9), NDJSON_GZIP, {204}),
    # the costliest body the decode-only rule runs inline: 63 KB, 2,048 values (2,046 30-digit numbers, which
    # orjson parses the slow way, and a last line that is not JSON: all the work, then a 400)
    "decode_inline": ("/decoded", lambda: (b"1" * 30 + b"\n") * 2046 + b"{\n",
                      {"content-type": "application/x-ndjson"}, {400}),
}


class Attack:
    """Sends one hostile request after another, from two connections, until stopped (each connection has a
    request in flight the whole time: the one in flight when it is stopped is finished)."""

    def __init__(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        self.url, self.body, self.headers = url, body, headers
        self.statuses: list[int] = []
        self.errors: list[BaseException] = []
        self.stopped = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(2)]

    def _run(self) -> None:
        try:
            with httpx.Client(timeout=60) as client:
                while not self.stopped.is_set():
                    self.statuses.append(client.post(self.url, content=self.body, headers=self.headers).status_code)
        except BaseException as exc:
            self.errors.append(exc)

    def __enter__(self) -> Attack:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(120)


def plain_p99(proxy: MeshbatchProcess) -> tuple[float, float]:
    latencies = []
    with httpx.Client(timeout=30) as client:
        for i in range(PLAIN_REQUESTS):
            start = time.perf_counter()
            response = client.get(proxy.url("main", f"/plain/echo?i={i}"))
            latencies.append(time.perf_counter() - start)
            assert response.status_code == 200
    latencies.sort()
    return latencies[int(0.99 * len(latencies)) - 1], latencies[-1]


def measure(proxy: MeshbatchProcess, name: str, body: bytes) -> tuple[float, float, float, Attack]:
    path, _, headers, _ = ATTACKS[name]
    calm, _ = plain_p99(proxy)
    with Attack(proxy.url("main", path), body, headers) as attack:
        time.sleep(0.2)  # both connections have a hostile request in the pipeline before measuring
        p99, worst = plain_p99(proxy)
    return calm, p99, worst, attack


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_plain_requests_keep_their_p99_while_a_pipeline_route_is_attacked(proxy: MeshbatchProcess,
                                                                           name: str) -> None:
    _, make_body, _, expected = ATTACKS[name]
    body = make_body()
    assert len(body) < 64 * 1024
    seen = []
    for _ in range(2):
        calm, p99, worst, attack = measure(proxy, name, body)
        assert not attack.errors, attack.errors
        assert len(attack.statuses) >= 2 and set(attack.statuses) <= expected, (name, set(attack.statuses))
        limit = max(P99_LIMIT, 2 * calm)
        seen.append(f"p99 {p99 * 1000:.1f} ms (worst {worst * 1000:.1f}, limit {limit * 1000:.0f}, without the "
                    f"attack {calm * 1000:.1f}) with {len(attack.statuses)} hostile requests")
        if p99 < limit:
            return
    pytest.fail(f"{name}: plain requests stalled: {'; '.join(seen)}")


def long_filter_config(tmp_path: Path, echo: UpstreamServer) -> Path:
    text = "+".join(["t"] * 2000) + " > 0"
    spec = config([listener("main", [*routes(), {
        "name": "sum", "match": {"path_prefix": "/sum"}, "cluster": "echo", "batch": {"max_items": 8},
        "pipeline": ["decode", {"filter": text}]}])], [cluster("echo", echo.address)])
    path = tmp_path / "long-filter.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def test_a_two_thousand_term_filter_is_refused_by_check_and_by_reload(tmp_path: Path, mesh: Any,
                                                                      echo: UpstreamServer) -> None:
    bad = long_filter_config(tmp_path, echo)
    checked = subprocess.run([sys.executable, "-m", "meshbatch", "check", str(bad)], capture_output=True, text=True,
                             timeout=60)
    assert checked.returncode == 1
    assert f"listeners[0].routes[{len(routes())}].pipeline[1].filter.expr: column 1: the expression has 2003 " \
           "terms and operators (limit 1000)" in checked.stdout + checked.stderr
    proxy = mesh.start(config([listener("main", routes())], [cluster("echo", echo.address)]), "reload.yaml")
    mark = proxy.mark()
    proxy.config_path.write_text(bad.read_text(encoding="utf-8"), encoding="utf-8")
    proxy.send_signal(1)  # SIGHUP
    proxy.wait_for_line("reload rejected", 30, start=mark)
    assert httpx.get(proxy.url("main", "/plain/echo"), timeout=10).status_code == 200
