"""Certificates that carry a SPIFFE ID and something more: an X509-SVID has exactly one URI SAN, its SPIFFE ID.

A client certificate with extra URI SANs is refused in the mTLS handshake of a strict listener; an upstream that
presents one is refused by the cluster's mTLS; the proxy does not start on such an identity of its own, and
`meshbatch ca show` says why. Certificates are made with `cryptography` and signed by a real CA; the handshakes
are real.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testbed.config import cluster, config, listener, route
from testbed.pki import Pki, client_context, leaf_with_uris, tls_request
from testbed.proxy import MeshbatchProcess, metric_value, write_config
from testbed.raw import get
from testbed.upstream import UpstreamServer

TD = "example.org"
WEB = f"spiffe://{TD}/ns/shop/sa/web"
EXTRA = {
    "spiffe_then_https": ([WEB, "https://evil.example/"], "several_uri_sans"),
    "https_then_spiffe": (["https://evil.example/", WEB], "several_uri_sans"),
    "two_spiffe_ids": ([WEB, f"spiffe://{TD}/ns/shop/sa/admin"], "several_spiffe_ids"),
    "other_scheme_only": (["urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66"], "no_spiffe_id"),
    "no_uri": ([], "no_spiffe_id"),
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    main = Pki(tmp_path_factory.mktemp("svid"))
    main.issue("server", "/ns/shop/sa/orders")
    main.issue("client", "/ns/shop/sa/web")
    for name, (uris, _) in EXTRA.items():
        leaf_with_uris(main, name, uris)
    return main


@pytest.fixture(scope="module")
def strict(module_mesh: Any, upstreams: dict[str, UpstreamServer], pki: Pki) -> MeshbatchProcess:
    return module_mesh.start(config([listener("main", [route("all", "echo")], tls={"mode": "strict"})],
                                    [cluster("echo", upstreams["a"].address)], identity=pki.identity("server")),
                             "strict-svid.yaml")


def _refusals(proxy: MeshbatchProcess, reason: str) -> float:
    text = httpx.get(proxy.url("admin", "/metrics"), timeout=5).text
    return metric_value(text, "meshbatch_tls_handshakes_total", listener="main", result=reason)


@pytest.mark.parametrize("name", sorted(EXTRA))
def test_client_certificates_that_are_not_svids_are_refused(strict: MeshbatchProcess, pki: Pki,
                                                            upstreams: dict[str, UpstreamServer], name: str) -> None:
    reason = EXTRA[name][1]
    before = _refusals(strict, reason)
    upstreams["a"].reset()
    context = client_context(pki.ca, pki.root / f"{name}.crt", pki.root / f"{name}.key")
    assert tls_request(strict.address("main"), context, get("/x")) == "refused"
    assert _refusals(strict, reason) == before + 1
    assert not upstreams["a"].requests
    good = client_context(pki.ca, pki.root / "client.crt", pki.root / "client.key")
    assert tls_request(strict.address("main"), good, get("/x")) == 200


@pytest.mark.parametrize("name", ["spiffe_then_https", "two_spiffe_ids"])
def test_the_proxy_refuses_such_an_identity_of_its_own(pki: Pki, upstreams: dict[str, UpstreamServer],
                                                       tmp_path: Path, name: str) -> None:
    spec = config([listener("main", [route("all", "echo")], tls={"mode": "strict"})],
                  [cluster("echo", upstreams["a"].address)], identity=pki.identity(name))
    path = write_config(tmp_path / "bad-identity.yaml", spec)
    done = subprocess.run([sys.executable, "-m", "meshbatch", "run", "--config", str(path)], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 1
    assert "not an X509-SVID" in done.stderr and "URI SAN" in done.stderr


def test_a_rotation_to_such_a_certificate_is_refused_and_the_old_one_stays(
        mesh: Any, upstreams: dict[str, UpstreamServer], pki: Pki, tmp_path: Path) -> None:
    cert, key = tmp_path / "live.crt", tmp_path / "live.key"
    cert.write_bytes((pki.root / "server.crt").read_bytes())
    key.write_bytes((pki.root / "server.key").read_bytes())
    identity = {"cert": str(cert), "key": str(key), "ca": str(pki.ca), "watch_interval_ms": 100}
    proxy = mesh.start(config([listener("main", [route("all", "echo")], tls={"mode": "strict"})],
                              [cluster("echo", upstreams["a"].address)], identity=identity))
    mark = proxy.mark()
    key.write_bytes((pki.root / "spiffe_then_https.key").read_bytes())
    cert.write_bytes((pki.root / "spiffe_then_https.crt").read_bytes())
    proxy.wait_for_line("not an X509-SVID", 10, start=mark)
    good = client_context(pki.ca, pki.root / "client.crt", pki.root / "client.key")
    assert tls_request(proxy.address("main"), good, get("/still")) == 200
    served = _served_identity(proxy.address("main"), good)
    assert served == [("URI", f"spiffe://{TD}/ns/shop/sa/orders")]


def _served_identity(address: tuple[str, int], context: ssl.SSLContext) -> list[tuple[str, str]]:
    with socket.create_connection(address, timeout=5) as raw, context.wrap_socket(raw) as sock:
        cert = sock.getpeercert()
        assert cert is not None
        return [entry for entry in cert.get("subjectAltName", ()) if entry[0] == "URI"]


@pytest.mark.parametrize(("name", "code"), [("spiffe_then_https", 1), ("two_spiffe_ids", 1), ("no_uri", 1),
                                            ("client", 0)])
def test_ca_show_refuses_certificates_that_are_not_svids(pki: Pki, name: str, code: int) -> None:
    done = subprocess.run([sys.executable, "-m", "meshbatch", "ca", "show", str(pki.root / f"{name}.crt")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == code, done.stderr
    assert ('"svid": false' in done.stdout) is bool(code)
    if code:
        assert "not an X509-SVID" in done.stderr


def test_ca_show_accepts_the_root(pki: Pki) -> None:
    done = subprocess.run([sys.executable, "-m", "meshbatch", "ca", "show", str(pki.ca)], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0 and '"svid": true' in done.stdout


# -- an upstream presenting extra URI SANs ---------------------------------------------------------------------


@contextlib.contextmanager
def _tls_upstream(pki: Pki, name: str) -> Iterator[tuple[str, int, list[int]]]:
    """A TLS server (client certificates required) with NAME's certificate, answering 200 to whatever it reads;
    yields its address and a list with the number of requests it answered."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.root / f"{name}.crt", pki.root / f"{name}.key")
    context.load_verify_locations(pki.ca)
    context.verify_mode = ssl.CERT_REQUIRED
    listening = socket.create_server(("127.0.0.1", 0))
    listening.settimeout(0.2)
    answered = [0]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listening.accept()
            except TimeoutError:
                continue
            try:
                raw.settimeout(5)
                with context.wrap_socket(raw, server_side=True) as conn:
                    if conn.recv(65536):
                        answered[0] += 1
                        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            except (OSError, ssl.SSLError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", listening.getsockname()[1], answered
    finally:
        stop.set()
        thread.join(5)
        listening.close()


def test_an_upstream_with_extra_uri_sans_is_refused(mesh: Any, pki: Pki) -> None:
    with _tls_upstream(pki, "spiffe_then_https") as (host, port, answered):
        proxy = mesh.start(config([listener("out", [route("all", "peer")])],
                                  [cluster("peer", f"{host}:{port}", tls={"mode": "strict"})],
                                  identity=pki.identity("client")))
        refused = httpx.get(proxy.url("out", "/x"), timeout=10)
        assert refused.status_code == 503 and refused.json()["reason"] == "upstream_tls_identity_mismatch"
        assert answered[0] == 0  # no request was written to it
