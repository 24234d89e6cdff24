"""gRPC through `meshbatch run` over mTLS both ways: a grpcio client presenting its workload certificate (h2 by
ALPN), a route policy on its SPIFFE ID, and a grpcio server that requires the proxy's certificate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from testbed.config import cluster, config, listener, route
from testbed.grpc_upstream import GrpcUpstream
from testbed.pki import Pki
from testbed.proxy import MeshbatchProcess

TD = "example.org"
ONLY_WEB = [{"name": "web-only", "action": "ALLOW",
             "rules": [{"from": [{"source": {"principals": [f"spiffe://{TD}/ns/shop/sa/web"]}}]}]}]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pki, Path]:
    root = tmp_path_factory.mktemp("pki")
    made = Pki(root, TD)
    made.issue("proxy", "/ns/mesh/sa/proxy", dns=("localhost",))
    made.issue("upstream", "/ns/shop/sa/inventory", dns=("localhost",))
    made.issue("web", "/ns/shop/sa/web")
    made.issue("other", "/ns/legacy/sa/old")
    return made, root


@pytest.fixture(scope="module")
def upstream(pki: tuple[Pki, Path]) -> Iterator[GrpcUpstream]:
    made, root = pki
    credentials = grpc.ssl_server_credentials(
        [((root / "upstream.key").read_bytes(), (root / "upstream.crt").read_bytes())],
        root_certificates=made.ca.read_bytes(), require_client_auth=True)
    server = GrpcUpstream("mtls", credentials).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, pki: tuple[Pki, Path], upstream: GrpcUpstream) -> MeshbatchProcess:
    made, _ = pki
    routes = [route("rpc", "inventory", {"path_prefix": "/test.Echo/"}, policies=ONLY_WEB)]
    tls = {"mode": "strict", "server_ids": [f"spiffe://{TD}/ns/shop/sa/inventory"]}
    process: MeshbatchProcess = module_mesh.start(config(
        [listener("secure", routes, tls={"mode": "strict"})],
        [cluster("inventory", upstream.address, protocol="http2", tls=tls)],
        identity=made.identity("proxy")))
    return process


def _channel(proxy: MeshbatchProcess, pki: tuple[Pki, Path], who: str) -> grpc.Channel:
    made, root = pki
    credentials = grpc.ssl_channel_credentials(made.ca.read_bytes(), (root / f"{who}.key").read_bytes(),
                                               (root / f"{who}.crt").read_bytes())
    _, port = proxy.address("secure")
    return grpc.secure_channel(f"localhost:{port}", credentials)


def test_unary_and_streaming_over_mtls_both_ways(proxy: MeshbatchProcess, pki: tuple[Pki, Path]) -> None:
    with _channel(proxy, pki, "web") as channel:
        answer, call = channel.unary_unary("/test.Echo/Unary").with_call(b"secure", timeout=5,
                                                                         metadata=(("x-meta", "tls"),))
        assert answer == b"secure"
        assert ("x-echo", "tls") in call.initial_metadata()
        assert dict(call.trailing_metadata())["x-upstream"] == "mtls"
        assert list(channel.unary_stream("/test.Echo/Stream")(b"3", timeout=5)) == [b"0", b"1", b"2"]
        with pytest.raises(grpc.RpcError) as caught:
            channel.unary_unary("/test.Echo/Unary")(b"abort:ALREADY_EXISTS:twice", timeout=5)
        assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_a_principal_the_policy_refuses_gets_permission_denied(proxy: MeshbatchProcess,
                                                              pki: tuple[Pki, Path]) -> None:
    with _channel(proxy, pki, "other") as channel, pytest.raises(grpc.RpcError) as caught:
        channel.unary_unary("/test.Echo/Unary")(b"x", timeout=5)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "denied" in (caught.value.details() or "")
