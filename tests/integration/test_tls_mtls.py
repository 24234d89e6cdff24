"""Real TLS handshakes against `meshbatch run` with certificates made by `meshbatch ca`: who is let in on a strict
listener, what permissive accepts, and mTLS between two proxies with the server's identity checked."""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from testbed.config import cluster, config, listener, route
from testbed.pki import Pki, bundle, client_context, tls_request
from testbed.proxy import MeshbatchProcess, metric_value
from testbed.raw import get
from testbed.upstream import UpstreamServer

TD = "example.org"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("pki")
    main = Pki(root)
    other = Pki(root, "other.org")  # a second CA, trusted by the bundle below, of another trust domain
    stranger = Pki(root / "stranger")  # same trust domain name, a CA nobody trusts
    main.issue("server", "/ns/shop/sa/orders")
    main.issue("client", "/ns/shop/sa/web")
    main.issue("expired", "/ns/shop/sa/web", ttl="1h", backdate="2h")
    other.issue("foreign", "/ns/shop/sa/web")
    stranger.issue("untrusted", "/ns/shop/sa/web", cert=root / "untrusted.crt", key=root / "untrusted.key")
    return {"main": main, "other": other, "stranger": stranger, "root": root,
            "bundle": bundle(root / "bundle.crt", main.ca, other.ca)}


def handshakes(proxy: MeshbatchProcess, result: str) -> float:
    text = httpx.get(proxy.url("admin", "/metrics"), timeout=5).text
    return metric_value(text, "meshbatch_tls_handshakes_total", result=result)


@pytest.fixture(scope="module")
def strict(module_mesh: Any, upstreams: dict[str, UpstreamServer], pki: dict[str, Any]) -> MeshbatchProcess:
    main: Pki = pki["main"]
    identity = main.identity("server", ca=pki["bundle"])
    return module_mesh.start(config([listener("main", [route("all", "echo")], tls={"mode": "strict"})],
                                    [cluster("echo", upstreams["a"].address)], identity=identity))


def test_the_right_certificate_is_accepted(strict: MeshbatchProcess, pki: dict[str, Any]) -> None:
    root: Path = pki["root"]
    context = client_context(pki["main"].ca, root / "client.crt", root / "client.key")
    assert tls_request(strict.address("main"), context, get("/ok")) == 200


@pytest.mark.parametrize(("name", "result"), [
    ("none", "no_client_certificate"),
    ("untrusted", "unknown_ca"),
    ("expired", "certificate_expired"),
    ("foreign", "wrong_trust_domain"),
])
def test_refused_clients(strict: MeshbatchProcess, pki: dict[str, Any], upstreams: dict[str, UpstreamServer],
                         name: str, result: str) -> None:
    root: Path = pki["root"]
    cert, key = (None, None) if name == "none" else (root / f"{name}.crt", root / f"{name}.key")
    before = handshakes(strict, result)
    upstreams["a"].reset()
    assert tls_request(strict.address("main"), client_context(pki["main"].ca, cert, key), get("/no")) == "refused"
    assert handshakes(strict, result) == before + 1
    assert not upstreams["a"].requests  # nothing reached the upstream


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_2])
def test_old_protocol_versions_are_refused(strict: MeshbatchProcess, pki: dict[str, Any],
                                           version: ssl.TLSVersion) -> None:
    root: Path = pki["root"]
    context = client_context(pki["main"].ca, root / "client.crt", root / "client.key", version=version)
    assert tls_request(strict.address("main"), context, get("/old")) == "refused"


def test_plaintext_on_a_strict_listener_is_refused(strict: MeshbatchProcess) -> None:
    before = handshakes(strict, "not_tls")
    assert tls_request(strict.address("main"), None, get("/plain")) == "refused"
    assert handshakes(strict, "not_tls") == before + 1


def test_permissive_serves_mtls_and_plaintext_on_one_port_and_tls12_by_config(
        mesh: Any, upstreams: dict[str, UpstreamServer], pki: dict[str, Any]) -> None:
    main: Pki = pki["main"]
    root: Path = pki["root"]
    proxy = mesh.start(config([listener("main", [route("all", "echo")],
                                        tls={"mode": "permissive", "min_version": "1.2"})],
                              [cluster("echo", upstreams["a"].address)], identity=main.identity("server")))
    address = proxy.address("main")
    assert tls_request(address, None, get("/plain")) == 200
    assert tls_request(address, client_context(main.ca, root / "client.crt", root / "client.key"), get("/m")) == 200
    tls12 = client_context(main.ca, root / "client.crt", root / "client.key", version=ssl.TLSVersion.TLSv1_2)
    assert tls_request(address, tls12, get("/m12")) == 200
    assert tls_request(address, client_context(main.ca), get("/nocert")) == "refused"  # TLS still means mTLS
    assert handshakes(proxy, "plaintext") == 1 and handshakes(proxy, "ok") == 2


def _sidecars(mesh: Any, upstream: UpstreamServer, main: Pki, server_ids: list[str]) -> MeshbatchProcess:
    """An inbound proxy (strict mTLS, only the outbound proxy's identity allowed) in front of `upstream`, and an
    outbound proxy whose cluster reaches it over mTLS; returns the outbound one."""
    allow_web = [{"name": "web-only", "action": "ALLOW",
                  "rules": [{"from": [{"source": {"principals": [f"spiffe://{TD}/ns/shop/sa/web"]}}]}]}]
    inbound = mesh.start(config([listener("in", [route("all", "app")], tls={"mode": "strict"}, policies=allow_web)],
                                [cluster("app", upstream.address)], identity=main.identity("server")))
    host, port = inbound.address("in")
    tls = {"mode": "strict", "server_ids": server_ids}
    return mesh.start(config([listener("out", [route("all", "peer")])],
                             [cluster("peer", f"{host}:{port}", tls=tls)], identity=main.identity("client")))


def test_mtls_between_proxies_checks_the_server_identity(mesh: Any, upstreams: dict[str, UpstreamServer],
                                                         pki: dict[str, Any]) -> None:
    upstream = upstreams["b"]
    upstream.reset()
    good = _sidecars(mesh, upstream, pki["main"], [f"spiffe://{TD}/ns/shop/sa/*"])
    answer = httpx.get(good.url("out", "/through"), timeout=5)
    assert answer.status_code == 200, answer.text
    assert upstream.last("/through").target == "/through"
    wrong = _sidecars(mesh, upstream, pki["main"], [f"spiffe://{TD}/ns/billing/sa/*"])
    refused = httpx.get(wrong.url("out", "/wrong"), timeout=5)
    assert refused.status_code == 503
    assert refused.json()["reason"] == "upstream_tls_identity_mismatch"


@pytest.mark.parametrize("alpn", ["http/1.1", "h2"])
def test_tls_clients_that_close_leave_no_warning_per_connection(strict: MeshbatchProcess, pki: dict[str, Any],
                                                               alpn: str) -> None:
    """A TLS client ending its connection with close_notify (as a sidecar does when it drains) is routine: no log
    line per connection (TLS has no half-close, so the server must not ask the TLS transport to stay open), and
    the connections are gone afterwards."""
    root: Path = pki["root"]
    context = client_context(pki["main"].ca, root / "client.crt", root / "client.key")
    context.set_alpn_protocols([alpn])
    start = strict.mark()
    for _ in range(5):
        with socket.create_connection(strict.address("main"), timeout=5) as raw:
            sock = context.wrap_socket(raw)
            assert sock.selected_alpn_protocol() == alpn
            if alpn == "h2":
                h2_exchange(sock)
            else:
                sock.sendall(get("/bye"))
                assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            sock.unwrap()  # close_notify, then the TCP close
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the closes are handled: the listener's open connections fall to 0
        text = httpx.get(strict.url("admin", "/metrics"), timeout=5).text
        if metric_value(text, "meshbatch_downstream_connections", listener="main") == 0:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the closed TLS connections are still counted open")
    assert "eof_received" not in "\n".join(strict.lines[start:])


def h2_exchange(sock: ssl.SSLSocket) -> None:
    """One GET over HTTP/2 on `sock`, read to its end."""
    import h2.connection
    import h2.events

    conn = h2.connection.H2Connection()
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":path", "/bye"), (":scheme", "https"), (":authority", "x")],
                      end_stream=True)
    sock.sendall(conn.data_to_send())
    while True:
        data = sock.recv(65536)
        assert data, "closed before the answer ended"
        events = conn.receive_data(data)
        sock.sendall(conn.data_to_send())
        if any(isinstance(event, h2.events.StreamEnded) for event in events):
            return
