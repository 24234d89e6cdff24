"""Hostile config files: bounded reading (size, YAML aliases, recursion) in `meshbatch check` and `run`, and a
large config reloaded (SIGHUP) while the data plane keeps serving."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from meshbatch.config import ConfigError, load, parse
from meshbatch.config.source import MAX_CONFIG_BYTES, MAX_EXPANDED_NODES, expanded_size
from testbed.config import cluster, config, listener, route
from testbed.proxy import write_config

BOMB = """\
a: &a ["x","x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]
listeners:
  - name: l
    listen: 127.0.0.1:0
    routes: []
    policies: [{name: p, action: ALLOW, rules: [{to: [{operation: {paths: *h}}]}]}]
clusters: []
"""


def check(path: Path, timeout: float = 30.0) -> tuple[int, str, float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "meshbatch", "check", str(path)], capture_output=True, text=True,
                          timeout=timeout)
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


def test_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    """10^8 nodes described in a few hundred bytes: refused at once, naming the reason, in bounded memory."""
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    code, out, seconds = check(path)
    assert code == 1, out
    assert f"more than {MAX_EXPANDED_NODES:,} nodes" in out
    assert seconds < 15, f"check took {seconds:.1f}s"


def test_recursive_alias_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse("listeners: &l [{name: a, listen: '127.0.0.1:0', routes: *l}]\nclusters: []\n")
    assert "recursive" in str(caught.value)


def test_shared_parts_within_the_bound_are_fine() -> None:
    """Aliases are a legitimate way to share a block; only an expansion beyond the bound is refused."""
    text = """
defaults: &limits {max_body_bytes: 1024}
listeners:
  - {name: a, listen: '127.0.0.1:0', limits: *limits, routes: [{name: r, cluster: c}]}
  - {name: b, listen: '127.0.0.1:0', limits: *limits, routes: [{name: s, cluster: c}]}
clusters: [{name: c, endpoints: ['127.0.0.1:1']}]
"""
    with pytest.raises(ConfigError) as caught:  # `defaults` is not a config key: the only error
        parse(text)
    assert [p.path for p in caught.value.problems] == ["defaults"]
    node = yaml.compose("x: &x [1, 2, 3]\ny: [*x, *x]\n")
    assert expanded_size(node) == 1 + 2 + 4 + 1 + 2 * 4  # mapping, its keys, x and its items, y, two copies of x


def test_oversized_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as handle:  # 100 MB, sparse: reading it whole is what must not happen
        handle.truncate(100 * 1024 * 1024)
    code, out, seconds = check(path)
    assert code == 1 and f"at most {MAX_CONFIG_BYTES:,} bytes" in out, out
    assert seconds < 10


def test_endless_file_is_bounded() -> None:
    """A file whose size says nothing (a device, a pipe) is read up to the bound, then refused."""
    with pytest.raises(ConfigError) as caught:
        load("/dev/zero")
    assert f"larger than {MAX_CONFIG_BYTES:,} bytes" in str(caught.value)


def test_binary_file_says_so(tmp_path: Path) -> None:
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"listeners: []\n\xff\xfe")
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert "not UTF-8" in str(caught.value)


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(ConfigError):
        parse("a: " + "[" * 100_000 + "]" * 100_000 + "\n")


def _large_config(upstream: str, extra_routes: int) -> dict[str, Any]:
    routes = [route(f"r{i}", "echo", {"path_prefix": f"/unused/{i}/some/longer/path", "methods": ["GET", "POST"],
                                      "headers": [{"name": "x-tenant", "exact": f"tenant-{i}"}]}, timeout_ms=1000)
              for i in range(extra_routes)]
    routes.append(route("all", "echo", timeout_ms=5000))
    return config([listener("main", routes)], [cluster("echo", upstream)])


def test_large_reload_does_not_stall_the_data_plane(mesh: Any, upstream: Any, tmp_path: Path) -> None:
    """A 1.5 MB config reloaded with SIGHUP: reading and validating it (seconds) happens off the event loop, so
    requests keep being answered meanwhile; only the snapshot swap itself runs on the loop."""
    proxy = mesh.start(_large_config(upstream.address, 10), "big.yaml")
    path = proxy.config_path
    write_config(path, _large_config(upstream.address, 7000))
    assert path.stat().st_size > 1_000_000
    started = time.monotonic()
    load(path)
    load_seconds = time.monotonic() - started  # what the loop would have been blocked for (in this process)

    latencies: list[tuple[float, float]] = []  # (sent at, seconds)
    stop = threading.Event()

    def send() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                sent = time.monotonic()
                assert client.get(proxy.url("main", "/echo")).status_code == 200
                latencies.append((sent, time.monotonic() - sent))

    sender = threading.Thread(target=send)
    sender.start()
    try:
        while len(latencies) < 20:
            time.sleep(0.01)
        mark = proxy.mark()
        begun = time.monotonic()
        proxy.send_signal(signal.SIGHUP)
        proxy.wait_for_line("meshbatch: reloaded", timeout=120, start=mark)
        ended = time.monotonic()
        time.sleep(0.2)
    finally:
        stop.set()
        sender.join(30)
    during = [seconds for sent, seconds in latencies if begun <= sent <= ended]
    assert len(during) >= 10, f"only {len(during)} requests were answered during a {ended - begun:.1f}s reload"
    worst = max(seconds for sent, seconds in latencies if sent >= begun - 1)
    # The snapshot build on the loop takes a fraction of the read; the read itself must not block the loop.
    assert worst < max(1.5, load_seconds / 2), f"a request waited {worst:.2f}s (reading the file: {load_seconds:.2f}s)"
