"""h2c by Upgrade through a running proxy: curl --http2 against http:// (101, then HTTP/2, to an HTTP/1.1
upstream), with a body, an h2 client over a socket going on with more streams, the listeners that do not switch
(`codec: http1`, TLS by ALPN), hostile upgrades answered 400 and the HTTP/2 limits after the switch."""

from __future__ import annotations

import json
import socket
import subprocess
from typing import Any

import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame

from testbed.config import cluster, config, listener, route
from testbed.h2peer import H2Socket, frame, parse_frames, request_headers
from testbed.proxy import MeshbatchProcess
from testbed.raw import read_all
from testbed.upstream import UpstreamServer


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, upstreams: dict[str, UpstreamServer]) -> MeshbatchProcess:
    listeners = [
        listener("main", [route("all", "echo")], {"max_body_bytes": 100_000}, http2={"max_pings": 5}),
        listener("h1only", [route("h1", "echo")], codec="http1"),
    ]
    process: MeshbatchProcess = module_mesh.start(config(listeners, [cluster("echo", upstreams["a"].address)]))
    return process


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "--max-time", "5", *args], capture_output=True, text=True, timeout=10)


def upgrades(proxy: MeshbatchProcess, name: str) -> int:
    import httpx

    listeners = httpx.get(f"{proxy.admin_url}/listeners", timeout=5).json()["listeners"]
    return int(next(item for item in listeners if item["name"] == name)["h2c_upgrades"])


def test_curl_http2_upgrades_to_an_http1_upstream(proxy: MeshbatchProcess) -> None:
    before = upgrades(proxy, "main")
    out = curl("--http2", "-D", "-", "-w", "\n%{http_version}", proxy.url("main", "/plain/up?q=1"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("HTTP/1.1 101 Switching Protocols")
    head = out.stdout.split("\n\n")[1]
    body, _, version = out.stdout.rpartition("\n")
    assert version == "2" and head.startswith("HTTP/2 200")  # curl says the answer came over HTTP/2
    seen = json.loads(body.split("\n\n", 2)[2])
    assert seen["target"] == "/plain/up?q=1" and seen["version"] == "1.1"  # the upstream still speaks HTTP/1.1
    names = {key for key, _ in seen["headers"]}
    assert not names & {"upgrade", "http2-settings", "connection"}  # hop-by-hop: not forwarded
    assert upgrades(proxy, "main") == before + 1


def test_curl_http2_upgrade_with_a_body(proxy: MeshbatchProcess) -> None:
    out = curl("--http2", "-d", "x" * 5000, "-w", "\n%{http_version}", proxy.url("main", "/plain/body"))
    body, _, version = out.stdout.rpartition("\n")
    assert version == "2", out.stderr
    assert json.loads(body)["body"] == "x" * 5000


def test_curl_http2_upgrade_expecting_100_continue(proxy: MeshbatchProcess) -> None:
    out = curl("--http2", "-H", "Expect: 100-continue", "--expect100-timeout", "4", "-d", "z" * 3000, "-D", "-",
               "-w", "\n%{http_version} %{time_total}", proxy.url("main", "/plain/expect"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("HTTP/1.1 100 Continue")  # (then the 101, then HTTP/2)
    rest, _, last = out.stdout.rpartition("\n")
    version, seconds = last.split()
    assert version == "2" and float(seconds) < 3  # the 100 came: curl did not wait out its 4 s
    assert json.loads(rest.split("\n\n", 3)[3])["body"] == "z" * 3000  # (after the 100, 101 and 200 heads)


def test_h2_client_upgrades_then_goes_on_with_more_streams(proxy: MeshbatchProcess) -> None:
    head = b"POST /plain/one HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello"
    with H2Socket(proxy.address("main"), upgrade=head) as h2:
        assert h2.switched.startswith(b"HTTP/1.1 101")
        h2.read_until(lambda a: 1 in a.ended)
        sids = [h2.request(f"/plain/{i}") for i in range(3)]
        answers = h2.read_until(lambda a: all(s in a.ended for s in sids))
    assert answers.status[1] == 200 and json.loads(answers.body[1])["body"] == "hello"
    assert [json.loads(answers.body[s])["target"] for s in sids] == ["/plain/0", "/plain/1", "/plain/2"]


def test_http1_listener_ignores_the_upgrade(proxy: MeshbatchProcess) -> None:
    before = upgrades(proxy, "h1only")
    out = curl("--http2", "-w", "\n%{http_version}", proxy.url("h1only", "/x"))
    body, _, version = out.stdout.rpartition("\n")
    assert version == "1.1" and json.loads(body)["target"] == "/x"
    assert upgrades(proxy, "h1only") == before




@pytest.mark.parametrize(("settings", "reason"), [
    (b"HTTP2-Settings: %%%\r\n", b"bad_http2_settings"),
    (b"HTTP2-Settings: AAMAAABk\r\nHTTP2-Settings: AAMAAABk\r\n", b"bad_http2_settings"),
    (b"HTTP2-Settings: " + b"A" * 2000 + b"\r\n", b"bad_http2_settings"),
    (b"", b"bad_http2_settings"),
])
def test_hostile_upgrades_are_400(proxy: MeshbatchProcess, settings: bytes, reason: bytes) -> None:
    answer = read_all(proxy.address("main"), b"GET /plain/x HTTP/1.1\r\nHost: t\r\n"
                      b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n" + settings + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 400") and reason in answer


def test_garbage_instead_of_the_preface_after_the_101(proxy: MeshbatchProcess) -> None:
    head = b"GET /plain/g HTTP/1.1\r\nHost: test\r\n\r\n"
    with H2Socket(proxy.address("main"), upgrade=head) as h2:
        h2.sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n" * 3)  # (after the preface h2 sent: a bad frame)
        answers = h2.read_until(lambda a: a.goaway is not None)
    assert h2.closed or answers.goaway is not None
    with socket.create_connection(proxy.address("main"), timeout=5) as sock:
        sock.sendall(b"GET /plain/g HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                     b"HTTP2-Settings: AAMAAABk\r\n\r\nGARBAGE-NOT-A-PREFACE-AT-ALL\r\n\r\n")
        out = b""
        while chunk := sock.recv(65_536):
            out += chunk
    assert out.startswith(b"HTTP/1.1 101")
    goaways = [f for f in parse_frames(out.partition(b"\r\n\r\n")[2]) if isinstance(f, GoAwayFrame)]
    assert not goaways or goaways[-1].error_code == ErrorCodes.PROTOCOL_ERROR  # and the connection closed


def test_http2_limits_apply_after_the_switch(proxy: MeshbatchProcess) -> None:
    with H2Socket(proxy.address("main"), upgrade=b"GET /plain/p HTTP/1.1\r\nHost: test\r\n\r\n") as h2:
        h2.read_until(lambda a: 1 in a.ended)
        h2.send(b"".join(frame(0x6, 0, 0, b"12345678") for _ in range(20)))  # a PING flood
        answers = h2.read_until(lambda a: a.goaway is not None)
    assert answers.goaway is not None and answers.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert request_headers  # (the helper the other tests use)
