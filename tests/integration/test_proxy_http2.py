"""HTTP/2 on listeners through a running proxy: curl (prior knowledge, and ALPN over mTLS), httpx with http2,
a plain route to an HTTP/1.1 upstream, a batching route fed by many streams of one connection, a client's
RST_STREAM withdrawing its batch item, and the `codec` setting refusing the other protocol."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import DataFrame, GoAwayFrame

from testbed.batch_upstream import BatchUpstream, Callers, Plug, batch_route, wait_until
from testbed.config import cluster, config, listener, route
from testbed.h2peer import PREFACE, H2Socket, parse_frames
from testbed.pki import Pki
from testbed.proxy import MeshbatchProcess, metric_value
from testbed.raw import read_all
from testbed.upstream import UpstreamServer

TD = "example.org"


@pytest.fixture(scope="module")
def batch_upstream() -> Iterator[BatchUpstream]:
    server = BatchUpstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, upstreams: dict[str, UpstreamServer], batch_upstream: BatchUpstream) -> MeshbatchProcess:
    routes = [batch_route("orders", "/orders/", "/b/json-array/ok", max_items=64), route("all", "echo")]
    listeners = [
        listener("main", routes, {"max_buffer_bytes": 4096}),
        listener("h1only", [route("h1", "echo")], codec="http1"),
        listener("h2only", [route("h2", "echo")], codec="http2"),
    ]
    clusters = [cluster("echo", upstreams["a"].address), cluster("batch", batch_upstream.address)]
    process: MeshbatchProcess = module_mesh.start(config(listeners, clusters))
    return process


@pytest.fixture
def callers(proxy: MeshbatchProcess, batch_upstream: BatchUpstream) -> Iterator[Callers]:
    batch_upstream.reset()
    with Callers(proxy.url("main"), proxy.admin_url) as c:
        yield c
        batch_upstream.release()


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "--max-time", "5", *args], capture_output=True, text=True, timeout=10)


def upstream_header(seen: dict[str, Any], name: str) -> list[str]:
    return [value for key, value in seen["headers"] if key == name]


# clients -------------------------------------------------------------------------------------------
def test_curl_with_prior_knowledge_through_a_plain_route(proxy: MeshbatchProcess) -> None:
    out = curl("--http2-prior-knowledge", "-H", "x-forwarded-for: 9.9.9.9", "-w", "\n%{http_version}",
               "-D", "-", proxy.url("main", "/plain/a/../b?q=1"))
    assert out.returncode == 0, out.stderr
    head, _, rest = out.stdout.partition("\n\n")  # (text mode: CRLF read as LF)
    body, _, version = rest.rpartition("\n")
    assert version == "2" and head.startswith("HTTP/2 200")
    seen = json.loads(body)
    assert seen["target"] == "/plain/b?q=1" and seen["version"] == "1.1"  # upstream still gets HTTP/1.1
    assert upstream_header(seen, "host") == [proxy.addresses["main"]]  # :authority, as Host
    assert upstream_header(seen, "x-forwarded-for") == ["9.9.9.9, 127.0.0.1"]  # the HTTP/1.1 trust rules
    request_id = upstream_header(seen, "x-request-id")[0]
    assert f"x-request-id: {request_id}" in head.lower()


def test_httpx_http2_many_requests_on_one_connection(proxy: MeshbatchProcess) -> None:
    with httpx.Client(http1=False, http2=True, base_url=proxy.url("main"), timeout=5) as client:
        answers = [client.post(f"/plain/{i}", content=b"x" * i) for i in range(20)]
    assert all(r.http_version == "HTTP/2" and r.status_code == 200 for r in answers)
    assert [r.json()["body"] for r in answers] == ["x" * i for i in range(20)]


def test_a_large_answer_streams_within_the_windows(proxy: MeshbatchProcess) -> None:
    body = b"z" * 300_000  # echoed back: far beyond the listener's 4 KiB buffer and the 64 KiB window
    with httpx.Client(http1=False, http2=True, base_url=proxy.url("main"), timeout=10) as client:
        response = client.post("/plain/big", content=body)
        again = client.get("/plain/after")
    assert response.status_code == 200 and response.json()["body"] == body.decode()
    assert again.status_code == 200


async def test_concurrent_streams_async(proxy: MeshbatchProcess) -> None:
    import asyncio

    async with httpx.AsyncClient(http1=False, http2=True, base_url=proxy.url("main"), timeout=5) as client:
        answers = await asyncio.gather(*(client.get(f"/plain/c/{i}") for i in range(50)))
    assert sorted(r.json()["target"] for r in answers) == sorted(f"/plain/c/{i}" for i in range(50))


# batching ---------------------------------------------------------------------------------------------
def test_streams_of_one_connection_are_batched_together(proxy: MeshbatchProcess, callers: Callers,
                                                       batch_upstream: BatchUpstream) -> None:
    with Plug(callers, batch_upstream, "/orders/plug", "orders"), H2Socket(proxy.address("main")) as h2:
        sids = [h2.request("/orders/x", "POST", orjson.dumps({"n": i}), extra=[("content-type", "application/json")])
                for i in range(10)]
        callers.wait_queued("orders", 10)
        batch_upstream.release()
        answers = h2.read_until(lambda a: all(s in a.ended for s in sids))
    assert [orjson.loads(answers.body[s])["echo"] for s in sids] == [{"n": i} for i in range(10)]
    assert all(answers.headers[s][b"x-meshbatch-batch-size"] == b"10" for s in sids)
    assert [b.size for b in batch_upstream.snapshot()] == [1, 10]


def test_a_reset_stream_withdraws_its_batch_item(proxy: MeshbatchProcess, callers: Callers,
                                                 batch_upstream: BatchUpstream) -> None:
    before = callers.metric("meshbatch_batch_cancelled_total", route="orders", stage="queued")
    with Plug(callers, batch_upstream, "/orders/plug", "orders"), H2Socket(proxy.address("main")) as h2:
        sids = [h2.request("/orders/x", "POST", orjson.dumps({"n": i}), extra=[("content-type", "application/json")])
                for i in range(3)]
        callers.wait_queued("orders", 3)
        h2.conn.reset_stream(sids[1], ErrorCodes.CANCEL)
        h2.send()
        callers.wait_queued("orders", 2)
        batch_upstream.release()
        answers = h2.read_until(lambda a: sids[0] in a.ended and sids[2] in a.ended)
    assert [orjson.loads(answers.body[s])["echo"] for s in (sids[0], sids[2])] == [{"n": 0}, {"n": 2}]
    assert [b.items for b in batch_upstream.snapshot()][1] == [{"n": 0}, {"n": 2}]
    assert callers.metric("meshbatch_batch_cancelled_total", route="orders", stage="queued") == before + 1


# codec ------------------------------------------------------------------------------------------------


def test_codec_http1_refuses_the_preface_as_http1_would(proxy: MeshbatchProcess) -> None:
    answer = read_all(proxy.address("h1only"), PREFACE)
    assert answer.startswith(b"HTTP/1.1 400 ")
    out = curl("--http2-prior-knowledge", proxy.url("h1only", "/x"))
    assert out.returncode != 0
    assert curl("-o", "/dev/null", "-w", "%{http_code}", proxy.url("h1only", "/x")).stdout == "200"


def test_codec_http2_refuses_http1(proxy: MeshbatchProcess) -> None:
    answer = read_all(proxy.address("h2only"), b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
    frames = parse_frames(answer)
    goaway = [f for f in frames if isinstance(f, GoAwayFrame)]
    assert goaway and goaway[0].error_code == ErrorCodes.PROTOCOL_ERROR
    out = curl("--http2-prior-knowledge", "-w", "%{http_version}", "-o", "/dev/null", proxy.url("h2only", "/x"))
    assert out.stdout == "2"


def test_auto_serves_both_on_one_port(proxy: MeshbatchProcess) -> None:
    one = curl("-w", "%{http_version}", "-o", "/dev/null", proxy.url("main", "/plain/1"))
    two = curl("--http2-prior-knowledge", "-w", "%{http_version}", "-o", "/dev/null", proxy.url("main", "/plain/2"))
    assert (one.stdout, two.stdout) == ("1.1", "2")


def test_a_partial_preface_waits_for_the_rest(proxy: MeshbatchProcess) -> None:
    with H2Socket(proxy.address("main"), preface_in_pieces=True) as h2:
        sid = h2.request("/plain/pieces")
        answers = h2.read_until(lambda a: sid in a.ended)
    assert answers.status[sid] == 200


# mTLS with ALPN --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mtls(module_mesh: Any, upstreams: dict[str, UpstreamServer],
         tmp_path_factory: pytest.TempPathFactory) -> tuple[MeshbatchProcess, Path, Pki]:
    root = tmp_path_factory.mktemp("pki")
    pki = Pki(root)
    pki.issue("server", "/ns/shop/sa/orders")
    pki.issue("client", "/ns/shop/sa/web")
    pki.issue("other", "/ns/legacy/sa/old")
    only_web = [{"name": "web-only", "action": "ALLOW",
                 "rules": [{"from": [{"source": {"principals": [f"spiffe://{TD}/ns/shop/sa/web"]}}]}]}]
    listeners = [listener("secure", [route("s2", "echo")], tls={"mode": "strict"}, policies=only_web),
                 listener("secure1", [route("s1", "echo")], tls={"mode": "strict"}, codec="http1")]
    process: MeshbatchProcess = module_mesh.start(config(listeners, [cluster("echo", upstreams["a"].address)],
                                                         identity=pki.identity("server")))
    return process, root, pki


def tls_curl(proxy: MeshbatchProcess, name: str, root: Path, pki: Pki, who: str, *args: str) -> list[str]:
    url = f"https://{proxy.addresses[name]}/secure"
    out = curl("-k", "--cacert", str(pki.ca), "--cert", str(root / f"{who}.crt"), "--key", str(root / f"{who}.key"),
               "-o", "/dev/null", "-w", "%{http_version} %{http_code}", *args, url)
    return out.stdout.split()


def handshakes_ok(proxy: MeshbatchProcess) -> float:
    text = httpx.get(proxy.url("admin", "/metrics"), timeout=5).text
    return metric_value(text, "meshbatch_tls_handshakes_total", listener="secure", result="ok")


def test_mtls_with_alpn_h2_keeps_the_identity(mtls: tuple[MeshbatchProcess, Path, Pki]) -> None:
    proxy, root, pki = mtls
    ok = handshakes_ok(proxy)
    assert tls_curl(proxy, "secure", root, pki, "client", "--http2") == ["2", "200"]
    assert handshakes_ok(proxy) == ok + 1
    assert tls_curl(proxy, "secure", root, pki, "other", "--http2") == ["2", "403"]  # the policy saw who it was
    assert tls_curl(proxy, "secure", root, pki, "client", "--http1.1") == ["1.1", "200"]
    assert tls_curl(proxy, "secure1", root, pki, "client", "--http2") == ["1.1", "200"]  # codec http1: no h2 offered


# drain ------------------------------------------------------------------------------------------------
def test_sigterm_sends_goaway_and_finishes_the_open_streams(mesh: Any, upstreams: dict[str, UpstreamServer]) -> None:
    proxy = mesh.start(config([listener("main", [route("all", "echo")])], [cluster("echo", upstreams["a"].address)]))
    with H2Socket(proxy.address("main")) as h2:
        sid = h2.request("/slow?ms=400")
        wait_until(lambda: upstreams["a"].requests, 5, "the request to reach the upstream")
        proxy.send_signal(signal.SIGTERM)
        answers = h2.read_until(lambda a: a.goaway is not None)
        assert answers.goaway is not None and answers.goaway.last_stream_id == sid
        assert answers.goaway.error_code == ErrorCodes.NO_ERROR
        raw = h2.sock.recv(65_536)  # h2's client reads nothing after GOAWAY: the rest as frames
        while chunk := h2.sock.recv(65_536):
            raw += chunk
    frames = parse_frames(raw)
    ends = [f for f in frames if isinstance(f, DataFrame) and "END_STREAM" in f.flags]
    assert ends and ends[-1].stream_id == sid
    assert proxy.wait(10) == 0
