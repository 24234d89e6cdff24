"""Answers that are live streams reach the caller piece by piece, as the upstream sends them, not when they end:
a gRPC bidi call in which each message waits for the answer to the one before, and server-sent events (chunked
and close-delimited) to HTTP/1.1 and HTTP/2 callers, each event read before the upstream may send the next. A
proxy that holds an unfinished answer of unknown length makes these reads time out instead of passing."""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from testbed.config import cluster, config, listener, route
from testbed.event_upstream import EventUpstream
from testbed.grpc_upstream import GrpcUpstream
from testbed.proxy import MeshbatchProcess, metric_value

WAIT = 5.0  # seconds a read may wait for the piece it needs: far beyond what a live answer takes


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, Any]]:
    made: dict[str, Any] = {"grpc": GrpcUpstream("live").start(), "events": EventUpstream(wait=2 * WAIT).start()}
    yield made
    for server in made.values():
        server.stop()


@pytest.fixture(scope="module")
def access_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("live") / "access.log"


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, upstreams: dict[str, Any], access_log: Path) -> MeshbatchProcess:
    routes = [route("grpc", "grpc", {"path_prefix": "/test.Echo/"}, timeout_ms=20_000),
              route("events", "events", {"path_prefix": "/events"}, timeout_ms=20_000)]
    clusters = [cluster("grpc", upstreams["grpc"].address, protocol="http2"),
                cluster("events", upstreams["events"].address)]
    process: MeshbatchProcess = module_mesh.start(config([listener("main", routes)], clusters,
                                                         access_log={"path": str(access_log), "flush_ms": 20}))
    return process


def logged(access_log: Path, target: str) -> dict[str, Any]:
    """The access log's line for `target` (written once the answer is over, within a flush or two)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        lines = access_log.read_text().splitlines() if access_log.exists() else []
        for line in lines:
            entry: dict[str, Any] = json.loads(line)
            if entry["path"] == target:
                return entry
        time.sleep(0.02)
    raise AssertionError(f"no access log line for {target}")


def test_a_bidi_call_gets_each_answer_before_it_sends_the_next_message(proxy: MeshbatchProcess,
                                                                       access_log: Path) -> None:
    answered: queue.Queue[bytes] = queue.Queue()

    def messages() -> Iterator[bytes]:
        for word in (b"a", b"bc", b"def"):
            yield word
            answered.get(timeout=WAIT)  # the answer to this one came through: the next may go

    host, port = proxy.address("main")
    with grpc.insecure_channel(f"{host}:{port}") as channel:
        call = channel.stream_stream("/test.Echo/Bidi")(messages(), timeout=4 * WAIT)
        answers = []
        for answer in call:
            answers.append(answer)
            answered.put(answer)
        assert answers == [b"A", b"BC", b"DEF"] and call.code() == grpc.StatusCode.OK
    text = httpx.get(proxy.url("admin", "/metrics"), timeout=5).text
    counted = metric_value(text, "meshbatch_grpc_requests_total", listener="main", route="grpc", grpc_status="ok")
    assert counted == 1  # counted by the status in its trailers, once they came
    assert logged(access_log, "/test.Echo/Bidi")["grpc_status"] == 0  # and logged with it


@pytest.mark.parametrize("close", [False, True], ids=["chunked", "close-delimited"])
def test_server_sent_events_reach_an_http11_caller_one_by_one(proxy: MeshbatchProcess, upstreams: dict[str, Any],
                                                              access_log: Path, close: bool) -> None:
    events: EventUpstream = upstreams["events"]
    before = events.timeouts
    target = "/events?n=3" + ("&close=1" if close else "")
    with httpx.stream("GET", proxy.url("main", target), timeout=WAIT) as answer:
        assert answer.status_code == 200 and answer.headers["content-type"] == "text/event-stream"
        assert "content-length" not in answer.headers
        _read_events(answer, events)
    assert events.timeouts == before
    entry = logged(access_log, target)  # logged once over, with the body that went through
    assert entry["status"] == 200 and entry["bytes_out"] == 3 * len("data: 0\n\n")


def test_server_sent_events_reach_an_http2_caller_one_by_one(proxy: MeshbatchProcess,
                                                             upstreams: dict[str, Any]) -> None:
    events: EventUpstream = upstreams["events"]
    before = events.timeouts
    with httpx.Client(http1=False, http2=True, timeout=WAIT) as client, \
            client.stream("GET", proxy.url("main", "/events?n=3")) as answer:
        assert answer.http_version == "HTTP/2" and answer.status_code == 200
        _read_events(answer, events)
    assert events.timeouts == before


def _read_events(answer: httpx.Response, events: EventUpstream) -> None:
    lines = (line for line in answer.iter_lines() if line)
    for i in range(3):
        assert next(lines) == f"data: {i}"  # (a proxy holding the answer: a read timeout here)
        if i < 2:
            events.release()
    assert list(lines) == []
