"""Certificate rotation without restart: two proxies talk mTLS under load while `meshbatch ca issue` replaces both
workload certificates, then the CA itself is rotated through a two-root bundle. No request fails, new handshakes
get the new certificate, connections made before keep working, and a broken rotation keeps the old one."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from testbed.config import cluster, config, listener, route
from testbed.pki import Pki, bundle, client_context, serial_of, served_serial
from testbed.proxy import MeshbatchProcess, metric_value
from testbed.raw import get
from testbed.upstream import UpstreamServer

TD = "example.org"


def wait_for(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll `predicate` (a TLS failure counts as "not yet": the probe may not trust what is served yet)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except (ssl.SSLError, OSError):
            pass
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def reloads(proxy: MeshbatchProcess) -> float:
    text = httpx.get(proxy.url("admin", "/metrics"), timeout=5).text
    return metric_value(text, "meshbatch_tls_certificate_reloads_total", result="ok")


class Load:
    """Threads sending requests through the outbound proxy until stopped; every failure is kept."""

    def __init__(self, url: str, threads: int = 4) -> None:
        self.url = url
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                try:
                    response = client.get(self.url)
                    failed = "" if response.status_code == 200 else f"{response.status_code} {response.text[:200]}"
                except httpx.HTTPError as exc:
                    failed = repr(exc)
                with self._lock:
                    if failed:
                        self.failures.append(failed)
                    else:
                        self.ok += 1

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)


def test_rotation_mid_load_drops_nothing(mesh: Any, upstreams: dict[str, UpstreamServer], tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    pki.issue("server", "/ns/shop/sa/orders")
    pki.issue("web", "/ns/shop/sa/web")
    # each proxy reads its own trust bundle file, so that the CA rotation below can rewrite them
    for name in ("server", "web"):
        bundle(tmp_path / f"{name}-bundle.crt", pki.ca)
    inbound: MeshbatchProcess = mesh.start(config(
        [listener("in", [route("all", "app")], tls={"mode": "strict"})], [cluster("app", upstreams["a"].address)],
        identity=pki.identity("server", ca=tmp_path / "server-bundle.crt")))
    host, port = inbound.address("in")
    outbound: MeshbatchProcess = mesh.start(config(
        [listener("out", [route("all", "peer")])],
        [cluster("peer", f"{host}:{port}", tls={"mode": "strict", "server_ids": [f"spiffe://{TD}/ns/shop/*"]},
                 idle_timeout_ms=300)],  # connections turn over: new handshakes happen during the load
        identity=pki.identity("web", ca=tmp_path / "web-bundle.crt")))
    probe = client_context(pki.ca, tmp_path / "web.crt", tmp_path / "web.key")
    old_serial = served_serial((host, port), probe)
    kept = probe.wrap_socket(socket.create_connection((host, port), timeout=5))  # made before the rotation
    try:
        with Load(outbound.url("out", "/rotate")) as load:
            wait_for(lambda: load.ok > 50, what="load to start")
            pki.issue("server", "/ns/shop/sa/orders")  # same files, new certificates and keys
            pki.issue("web", "/ns/shop/sa/web")
            new_serial = serial_of(tmp_path / "server.crt")
            wait_for(lambda: served_serial((host, port), probe) == new_serial, what="the new server certificate")
            # CA rotation: trust both roots, move the workloads to the new CA, then trust only the new root
            new_ca = Pki(tmp_path / "next")
            loads = {p: reloads(p) for p in (inbound, outbound)}
            for name in ("server", "web"):
                bundle(tmp_path / f"{name}-bundle.crt", pki.ca, new_ca.ca)
            for proxy, count in loads.items():
                wait_for(lambda proxy=proxy, count=count: reloads(proxy) > count, what="both bundles picked up")
            new_ca.issue("server", "/ns/shop/sa/orders", cert=tmp_path / "server.crt", key=tmp_path / "server.key")
            new_ca.issue("web", "/ns/shop/sa/web", cert=tmp_path / "web.crt", key=tmp_path / "web.key")
            next_probe = client_context(new_ca.ca, tmp_path / "web.crt", tmp_path / "web.key")
            newest = serial_of(tmp_path / "server.crt")
            wait_for(lambda: served_serial((host, port), next_probe) == newest, what="the certificate of the new CA")
            ok_before = load.ok
            wait_for(lambda: load.ok > ok_before + 50, what="traffic after the CA rotation")
        assert load.failures == [], load.failures[:5]
        assert newest != old_serial
        kept.sendall(get("/kept"))  # the connection made with the old certificate still serves
        assert kept.recv(65536).startswith(b"HTTP/1.1 200")
    finally:
        kept.close()


def test_a_broken_rotation_keeps_the_previous_certificate(mesh: Any, upstreams: dict[str, UpstreamServer],
                                                          tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    pki.issue("server", "/ns/shop/sa/orders")
    pki.issue("web", "/ns/shop/sa/web")
    proxy = mesh.start(config([listener("in", [route("all", "app")], tls={"mode": "strict"})],
                              [cluster("app", upstreams["a"].address)], identity=pki.identity("server")))
    address = proxy.address("in")
    probe = client_context(pki.ca, tmp_path / "web.crt", tmp_path / "web.key")
    before = served_serial(address, probe)
    other = tmp_path / "other"
    other.mkdir()
    pki.issue("x", "/ns/shop/sa/orders", cert=other / "x.crt", key=tmp_path / "server.key")  # key of another cert
    wait_for(lambda: metric_value(httpx.get(proxy.url("admin", "/metrics"), timeout=5).text,
                                  "meshbatch_tls_certificate_reloads_total", result="error") >= 1,
             what="the failed reload to be counted")
    assert served_serial(address, probe) == before
    pki.issue("server", "/ns/shop/sa/orders")  # a good rotation afterwards is picked up
    after = serial_of(tmp_path / "server.crt")
    wait_for(lambda: served_serial(address, probe) == after, what="the good rotation")
