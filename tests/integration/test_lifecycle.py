"""Drain (SIGTERM) and reload (SIGHUP) of a running `meshbatch run`, with real clients in flight."""

from __future__ import annotations

import concurrent.futures
import signal
import socket
import time
from typing import Any

import httpx
import pytest

from testbed.config import cluster, config, listener, route
from testbed.proxy import MeshbatchProcess, metric_value, write_config
from testbed.raw import RawClient, get
from testbed.upstream import UpstreamServer


def wait_until(predicate: Any, timeout: float = 5.0, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {message}"
        time.sleep(0.01)


def refuses(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=1):
            return False
    except ConnectionRefusedError:
        return True


# drain -----------------------------------------------------------------------------------------------
def test_sigterm_lets_requests_in_flight_finish(mesh: Any, upstreams: dict[str, UpstreamServer]) -> None:
    upstream = upstreams["a"]
    proxy: MeshbatchProcess = mesh.start(config(
        [listener("main", [route("all", "echo", timeout_ms=5000)])],
        [cluster("echo", upstream.address)],
        drain_timeout_ms=5000,
    ))
    address = proxy.address("main")
    url = proxy.url("main")
    idle = RawClient(address)  # a kept-alive connection with nothing in flight
    idle.send(get("/idle"))
    assert idle.read_response().status == 200
    upstream.reset()

    def call(i: int) -> httpx.Response:
        return httpx.get(f"{url}/slow?ms=800&i={i}", timeout=10)

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(call, i) for i in range(6)]
        wait_until(lambda: len(upstream.requests) == 6, message="all requests to reach the upstream")
        mark = proxy.mark()
        proxy.send_signal(signal.SIGTERM)
        proxy.wait_for_line("meshbatch: draining", start=mark)
        wait_until(lambda: refuses(address), message="the listener to stop accepting")
        ready = httpx.get(proxy.url("admin", "/ready"), timeout=5)
        assert (ready.status_code, ready.text.strip()) == (503, "DRAINING")
        assert idle.closed_by_peer(2), "an idle keep-alive connection closes when the drain begins"
        responses = [f.result() for f in futures]
    idle.close()
    assert [r.status_code for r in responses] == [200] * 6
    assert all(r.headers.get("connection") == "close" for r in responses)
    assert proxy.wait(10) == 0
    assert "meshbatch: drained unfinished=0" in proxy.stderr


def test_drain_timeout_bounds_the_wait(mesh: Any, upstreams: dict[str, UpstreamServer]) -> None:
    upstream = upstreams["b"]
    proxy: MeshbatchProcess = mesh.start(config(
        [listener("main", [route("all", "echo", timeout_ms=10_000)])],
        [cluster("echo", upstream.address)],
        drain_timeout_ms=300,
    ))
    upstream.reset()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        stuck = pool.submit(httpx.get, proxy.url("main", "/slow?ms=5000"), timeout=10)
        wait_until(lambda: len(upstream.requests) == 1, message="the request to reach the upstream")
        started = time.monotonic()
        proxy.send_signal(signal.SIGTERM)
        assert proxy.wait(5) == 0
        assert time.monotonic() - started < 2.5
        with pytest.raises(httpx.TransportError):
            stuck.result()
    assert "meshbatch: drained unfinished=1" in proxy.stderr


def test_sigint_drains_too(mesh: Any, upstreams: dict[str, UpstreamServer]) -> None:
    proxy: MeshbatchProcess = mesh.start(config(
        [listener("main", [route("all", "echo")])], [cluster("echo", upstreams["a"].address)]))
    proxy.send_signal(signal.SIGINT)
    assert proxy.wait(5) == 0
    assert "meshbatch: drained" in proxy.stderr


# reload ----------------------------------------------------------------------------------------------
def base_config(upstreams: dict[str, UpstreamServer], extra_routes: list[dict[str, Any]] | None = None,
                **extra: Any) -> dict[str, Any]:
    routes = [*(extra_routes or []), route("old", "a", {"path_prefix": "/old"})]
    return config(
        [listener("main", routes)],
        [cluster("a", upstreams["a"].address), cluster("b", upstreams["b"].address)],
        **extra,
    )


def reload(proxy: MeshbatchProcess, new_config: dict[str, Any], expect: str) -> str:
    write_config(proxy.config_path, new_config)
    mark = proxy.mark()
    proxy.send_signal(signal.SIGHUP)
    return proxy.wait_for_line(expect, start=mark)


def reloads(proxy: MeshbatchProcess, result: str) -> float:
    text = httpx.get(proxy.url("admin", "/metrics"), timeout=5).text
    return metric_value(text, "meshbatch_config_reloads_total", result=result)


def test_sighup_with_a_good_config(mesh: Any, upstreams: dict[str, UpstreamServer]) -> None:
    proxy: MeshbatchProcess = mesh.start(base_config(upstreams))
    address = proxy.address("main")
    with RawClient(address) as old_conn:
        old_conn.send(get("/old/1"))
        assert old_conn.read_response().json()["server"] == "a"
        assert httpx.get(proxy.url("main", "/new/1"), timeout=5).status_code == 404

        new_routes = [route("new", "b", {"path_prefix": "/new"})]
        reload(proxy, base_config(upstreams, new_routes), "meshbatch: reloaded version=2")

        new = httpx.get(proxy.url("main", "/new/2"), timeout=5)  # a new connection sees the new route
        assert new.status_code == 200 and new.json()["server"] == "b"
        old_conn.send(get("/old/2"))  # the connection opened before the reload keeps working...
        assert old_conn.read_response().json()["server"] == "a"
        old_conn.send(get("/new/3"))  # ...with the new routes
        assert old_conn.read_response().json()["server"] == "b"
    assert proxy.addresses["main"] == f"{address[0]}:{address[1]}"  # the same socket
    dump = httpx.get(proxy.url("admin", "/config_dump"), timeout=5).json()
    assert dump["version"] == 2
    assert [r["name"] for r in dump["config"]["listeners"][0]["routes"]] == ["new", "old"]
    assert reloads(proxy, "ok") == 1
    assert proxy.terminate() == 0


def test_sighup_opens_a_new_listener(mesh: Any, upstreams: dict[str, UpstreamServer]) -> None:
    proxy: MeshbatchProcess = mesh.start(base_config(upstreams))
    updated = base_config(upstreams)
    updated["listeners"].append(listener("second", [route("second", "b")]))
    reload(proxy, updated, "meshbatch: reloaded version=2")
    assert "second" in proxy.addresses
    assert httpx.get(proxy.url("second", "/x"), timeout=5).json()["server"] == "b"
    assert proxy.terminate() == 0


def test_sighup_with_a_bad_config_keeps_the_old_one(mesh: Any, upstreams: dict[str, UpstreamServer]) -> None:
    proxy: MeshbatchProcess = mesh.start(base_config(upstreams))
    with RawClient(proxy.address("main")) as conn:
        conn.send(get("/old/1"))
        assert conn.read_response().status == 200
        bad = base_config(upstreams, [route("broken", "missing", {"path_prefix": "/new"}, timeout_ms=0)])
        bad["listeners"][0]["limits"] = {"max_conections": 5}
        mark = proxy.mark()
        line = reload(proxy, bad, "meshbatch: reload rejected errors=")
        assert "errors=3" in line
        log = proxy.stderr.splitlines()[mark:]
        for expected in ("listeners[0].routes[0].timeout_ms: must be >= 1",
                         "listeners[0].limits.max_conections: unknown key; did you mean 'max_connections'?",
                         "listeners[0].routes[0].cluster: no cluster named 'missing'"):
            assert any(expected in entry for entry in log), (expected, log)
        conn.send(get("/old/2"))  # the old config keeps serving, on old and new connections
        assert conn.read_response().json()["server"] == "a"
    assert httpx.get(proxy.url("main", "/old/3"), timeout=5).status_code == 200
    assert httpx.get(proxy.url("main", "/new/1"), timeout=5).status_code == 404
    assert httpx.get(proxy.url("admin", "/config_dump"), timeout=5).json()["version"] == 1
    assert reloads(proxy, "rejected") == 1
    # A later good reload still works, and the exit code is unaffected by the rejected one.
    reload(proxy, base_config(upstreams, [route("new", "b", {"path_prefix": "/new"})]),
           "meshbatch: reloaded version=2")
    assert httpx.get(proxy.url("main", "/new/1"), timeout=5).json()["server"] == "b"
    assert proxy.terminate() == 0


def test_sighup_with_unparseable_yaml(mesh: Any, upstreams: dict[str, UpstreamServer]) -> None:
    proxy: MeshbatchProcess = mesh.start(base_config(upstreams))
    proxy.config_path.write_text("listeners: [\n  {name: main\n")
    mark = proxy.mark()
    proxy.send_signal(signal.SIGHUP)
    proxy.wait_for_line("meshbatch: reload rejected errors=1", start=mark)
    assert any("line " in entry for entry in proxy.stderr.splitlines()[mark:])
    assert httpx.get(proxy.url("main", "/old/1"), timeout=5).status_code == 200
    assert proxy.terminate() == 0


def test_sighup_that_cannot_bind_keeps_the_old_config(mesh: Any, upstreams: dict[str, UpstreamServer]) -> None:
    proxy: MeshbatchProcess = mesh.start(base_config(upstreams))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        updated = base_config(upstreams, [route("new", "b", {"path_prefix": "/new"})])
        updated["listeners"].append(listener("taken", [route("taken", "b")]))
        updated["listeners"][1]["listen"] = f"127.0.0.1:{busy.getsockname()[1]}"
        reload(proxy, updated, "meshbatch: reload rejected error=")
    assert httpx.get(proxy.url("main", "/new/1"), timeout=5).status_code == 404  # nothing of it applied
    assert httpx.get(proxy.url("main", "/old/1"), timeout=5).status_code == 200
    assert reloads(proxy, "rejected") == 1
    assert proxy.terminate() == 0
