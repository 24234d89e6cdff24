"""HTTP/1.1 through a running proxy: keep-alive, pipelining, chunked both ways, 100-continue, hop-by-hop
headers, forwarding headers and request ids. httpx, curl and raw sockets against a real upstream."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testbed.config import simple
from testbed.proxy import MeshbatchProcess
from testbed.raw import RawClient, exchange, get, request
from testbed.upstream import UpstreamServer

HEX32 = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, upstreams: dict[str, UpstreamServer]) -> MeshbatchProcess:
    return module_mesh.start(simple(upstreams["a"].address))


@pytest.fixture
def client(proxy: MeshbatchProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=proxy.url("main"), timeout=5) as c:
        yield c


def accepted(proxy: MeshbatchProcess) -> int:
    listeners = httpx.get(proxy.url("admin", "/listeners"), timeout=5).json()["listeners"]
    return int(next(item["accepted"] for item in listeners if item["name"] == "main"))


def upstream_headers(response: httpx.Response) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in response.json()["headers"]:
        out.setdefault(name, []).append(value)
    return out


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "--max-time", "5", *args], capture_output=True, text=True, timeout=10)


# keep-alive and pipelining ---------------------------------------------------------------------------
def test_keep_alive_reuses_one_connection_each_way(proxy: MeshbatchProcess, client: httpx.Client,
                                                   upstream: UpstreamServer) -> None:
    client.get("/warm")
    before, upstream_before = accepted(proxy), upstream.connections
    for i in range(10):
        assert client.get(f"/ka/{i}").json()["target"] == f"/ka/{i}"
    assert accepted(proxy) == before  # the same downstream connection
    assert upstream.connections == upstream_before  # and a pooled upstream one


def test_keep_alive_on_a_raw_socket(proxy: MeshbatchProcess) -> None:
    with RawClient(proxy.address("main")) as conn:
        for i in range(3):
            conn.send(get(f"/raw/{i}"))
            response = conn.read_response()
            assert response.status == 200 and response.json()["target"] == f"/raw/{i}"
            assert response.header("connection") is None
        assert not conn.closed_by_peer(0.05)


def test_pipelined_requests_are_answered_in_order(proxy: MeshbatchProcess) -> None:
    burst = (
        get("/slow?ms=150&n=1")
        + b"POST /p/2 HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello"
        + b"POST /p/3 HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        + get("/p/4")
        + b"HEAD /p/5 HTTP/1.1\r\nHost: test\r\n\r\n"
        + get("/p/6", extra="Connection: close\r\n")
    )
    with RawClient(proxy.address("main")) as conn:
        conn.send(burst)
        answers = [conn.read_response(head_request=(i == 4)) for i in range(6)]
        assert conn.closed_by_peer()
    targets = [a.json()["target"] if a.body else None for a in answers]
    assert targets == ["/slow?ms=150&n=1", "/p/2", "/p/3", "/p/4", None, "/p/6"]
    assert [a.json()["body"] for a in answers if a.body][1:3] == ["hello", "abc"]
    assert answers[-1].header("connection") == "close"
    assert len({a.header("x-request-id") for a in answers}) == 6


def test_connection_close_is_honoured(proxy: MeshbatchProcess) -> None:
    response, closed = request(proxy.address("main"), get("/bye", extra="Connection: close\r\n"))
    assert response.status == 200 and response.header("connection") == "close"
    assert closed


def test_half_closed_client_gets_its_answers_then_the_close(proxy: MeshbatchProcess) -> None:
    with RawClient(proxy.address("main")) as conn:
        conn.send(get("/slow?ms=100") + get("/half/2"))
        conn.sock.shutdown(socket.SHUT_WR)  # as `nc -N` or a client done writing
        assert conn.read_response().json()["target"] == "/slow?ms=100"
        assert conn.read_response().json()["target"] == "/half/2"
        assert conn.closed_by_peer(2)


def test_http10_is_answered_and_closed(proxy: MeshbatchProcess) -> None:
    response, closed = request(proxy.address("main"), b"GET /old HTTP/1.0\r\n\r\n")
    assert response.status == 200
    assert response.json()["target"] == "/old"
    assert closed


# bodies -----------------------------------------------------------------------------------------------
def test_chunked_request_body_goes_upstream_with_content_length(client: httpx.Client) -> None:
    def parts() -> Iterator[bytes]:
        yield b'{"items": ['
        yield b"1, 2, 3"
        yield b"]}"

    response = client.post("/chunked-in", content=parts())  # httpx sends a generator chunked
    echo = response.json()
    assert echo["body"] == '{"items": [1, 2, 3]}'
    headers = upstream_headers(response)
    assert headers["content-length"] == ["20"]
    assert "transfer-encoding" not in headers


def test_chunked_upstream_answer_reaches_the_caller(client: httpx.Client) -> None:
    response = client.get("/chunked?n=7")
    assert response.status_code == 200
    assert response.json()["target"] == "/chunked?n=7"
    # Content-Length framed when its chunks came in one read, else it streamed to the caller as they came
    if "transfer-encoding" not in response.headers:
        assert int(response.headers["content-length"]) == len(response.content)


def test_large_body_round_trip(client: httpx.Client) -> None:
    body = ("0123456789abcdef" * 65536).encode()  # 1 MiB
    response = client.post("/big", content=body)
    assert response.json()["body"].encode() == body


def test_curl_chunked_upload(proxy: MeshbatchProcess, tmp_path: Path) -> None:
    data = tmp_path / "body.json"
    data.write_text(json.dumps({"n": list(range(2000))}))
    out = curl("-H", "Transfer-Encoding: chunked", "--data-binary", f"@{data}", proxy.url("main", "/curl-chunked"))
    assert out.returncode == 0, out.stderr
    assert json.loads(json.loads(out.stdout)["body"]) == {"n": list(range(2000))}


def test_curl_expect_100_continue(proxy: MeshbatchProcess, tmp_path: Path) -> None:
    data = tmp_path / "big.bin"
    data.write_bytes(b"z" * 200_000)
    out = curl("-v", "-H", "Expect: 100-continue", "--expect100-timeout", "4", "--data-binary", f"@{data}",
               proxy.url("main", "/expect"))
    assert out.returncode == 0, out.stderr
    assert "HTTP/1.1 100 Continue" in out.stderr
    echo = json.loads(out.stdout)
    assert len(echo["body"]) == 200_000
    assert "expect" not in dict(echo["headers"])  # Expect is hop-by-hop: the proxy answered it


def test_curl_sends_expect_by_itself_for_large_bodies(proxy: MeshbatchProcess, tmp_path: Path) -> None:
    data = tmp_path / "large.bin"
    data.write_bytes(b"q" * 1_500_000)  # curl asks for 100-continue above 1 MiB
    out = curl("-v", "--data-binary", f"@{data}", proxy.url("main", "/expect-large"))
    assert out.returncode == 0, out.stderr
    assert "> Expect: 100-continue" in out.stderr
    assert "< HTTP/1.1 100 Continue" in out.stderr
    assert len(json.loads(out.stdout)["body"]) == 1_500_000


def test_expect_100_continue_on_a_raw_socket(proxy: MeshbatchProcess) -> None:
    with RawClient(proxy.address("main")) as conn:
        conn.send(b"POST /expect HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
        interim = conn.read_response()
        assert interim.status == 100
        conn.send(b"data")
        final = conn.read_response()
        assert final.status == 200 and final.json()["body"] == "data"


# headers ---------------------------------------------------------------------------------------------
def test_hop_by_hop_request_headers_are_stripped(proxy: MeshbatchProcess) -> None:
    response = exchange(proxy.address("main"), get("/hop-in", extra=(
        "Connection: keep-alive, X-Private\r\n"
        "X-Private: secret\r\n"
        "Keep-Alive: timeout=5\r\n"
        "Proxy-Connection: keep-alive\r\n"
        "Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"
        "TE: trailers\r\n"
        "Trailer: x-sum\r\n"
        "X-Public: kept\r\n"
    )))
    headers = response.json()["headers"]
    names = {name for name, _ in headers}
    assert not names & {"connection", "x-private", "keep-alive", "proxy-connection", "proxy-authorization",
                        "trailer", "transfer-encoding", "upgrade"}
    assert "x-public" in names
    assert [value for name, value in headers if name == "te"] == ["trailers"]  # passed on: the caller takes trailers


def test_hop_by_hop_response_headers_are_stripped(client: httpx.Client) -> None:
    response = client.get("/hop")
    assert response.status_code == 200
    for name in ("x-upstream-private", "keep-alive", "proxy-connection", "trailer", "upgrade"):
        assert name not in response.headers, name
    assert response.headers.get("connection") is None
    assert response.headers["x-end-to-end"] == "kept"


def test_forwarding_headers(client: httpx.Client) -> None:
    response = client.get("/fwd")
    headers = upstream_headers(response)
    assert headers["x-forwarded-for"] == ["127.0.0.1"]
    assert headers["x-forwarded-proto"] == ["http"]
    assert headers["via"] == ["1.1 meshbatch"]
    assert response.headers["via"] == "1.1 meshbatch"


def test_forwarding_headers_are_appended(client: httpx.Client) -> None:
    response = client.get("/fwd", headers={"x-forwarded-for": "203.0.113.7", "via": "1.1 edge",
                                           "x-forwarded-proto": "https"})
    headers = upstream_headers(response)
    assert headers["x-forwarded-for"] == ["203.0.113.7, 127.0.0.1"]
    assert headers["via"] == ["1.1 edge, 1.1 meshbatch"]
    assert headers["x-forwarded-proto"] == ["http"]


def test_request_id_is_generated_when_absent(client: httpx.Client) -> None:
    response = client.get("/rid")
    sent = upstream_headers(response)["x-request-id"]
    assert len(sent) == 1 and HEX32.match(sent[0])
    assert response.headers["x-request-id"] == sent[0]
    assert client.get("/rid").headers["x-request-id"] != sent[0]


def test_empty_request_id_is_replaced(proxy: MeshbatchProcess) -> None:
    response = exchange(proxy.address("main"), get("/rid", extra="X-Request-Id: \r\n"))
    sent = [v for k, v in response.json()["headers"] if k == "x-request-id"]
    assert len(sent) == 1 and HEX32.match(sent[0])
    assert response.header("x-request-id") == sent[0]


def test_request_id_is_passed_on_when_present(client: httpx.Client) -> None:
    response = client.get("/rid", headers={"x-request-id": "trace-42"})
    assert upstream_headers(response)["x-request-id"] == ["trace-42"]
    assert response.headers["x-request-id"] == "trace-42"


def test_http10_without_host_gets_one_upstream(proxy: MeshbatchProcess) -> None:
    response = exchange(proxy.address("main"), b"GET /old HTTP/1.0\r\n\r\n")
    assert dict(response.json()["headers"])["host"] == "echo"  # the cluster's name


# status codes and methods ----------------------------------------------------------------------------
@pytest.mark.parametrize("status", [201, 202, 400, 404, 500, 503])
def test_upstream_status_is_passed_through(client: httpx.Client, status: int) -> None:
    response = client.get(f"/status/{status}")
    assert response.status_code == status
    assert response.json()["target"] == f"/status/{status}"


def test_204_has_no_body(proxy: MeshbatchProcess) -> None:
    with RawClient(proxy.address("main")) as conn:
        conn.send(get("/status/204") + get("/after"))
        first = conn.read_response()
        assert first.status == 204 and first.header("content-length") is None
        assert conn.read_response().json()["target"] == "/after"  # framing stayed in step


def test_head_has_no_body_and_keeps_the_connection(proxy: MeshbatchProcess, client: httpx.Client) -> None:
    response = client.head("/head")
    assert response.status_code == 200 and response.content == b""
    assert response.headers.get("content-length") in (None, str(len(client.get("/head").content)))
    with RawClient(proxy.address("main")) as conn:
        conn.send(b"HEAD /h HTTP/1.1\r\nHost: test\r\n\r\n" + get("/after-head"))
        assert conn.read_response(head_request=True).status == 200
        assert conn.read_response().json()["target"] == "/after-head"


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_methods_are_forwarded(client: httpx.Client, method: str) -> None:
    response = client.request(method, "/m", content=b"" if method in ("GET", "DELETE", "OPTIONS") else b"x")
    assert response.json()["method"] == method


def test_curl_keep_alive_across_urls(proxy: MeshbatchProcess) -> None:
    out = curl("-v", proxy.url("main", "/c1"), proxy.url("main", "/c2"))
    assert out.returncode == 0, out.stderr
    assert "Re-using existing connection" in out.stderr
