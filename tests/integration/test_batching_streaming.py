"""`batch.stream_results` through `meshbatch run`: an ndjson upstream that streams one line per item as it
completes (testbed/stream_upstream.py) answers each caller when its line arrives, over real sockets."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from testbed.config import cluster, config, listener
from testbed.proxy import MeshbatchProcess, metric_value
from testbed.stream_upstream import StreamUpstream

# Three callers share one batch: each batch is held 800 ms for the others (who come 150 ms apart, in order).
GROUP = {"codec": "ndjson", "max_items": 3, "min_wait_ms": 800, "max_wait_ms": 800, "max_in_flight": 1}


def route(name: str, path: str, **batch: Any) -> dict[str, Any]:
    return {"name": name, "match": {"path_prefix": f"/{name}/"}, "cluster": "stream", "timeout_ms": 5000,
            "batch": {**GROUP, "upstream_path": path, **batch}}


@pytest.fixture(scope="module")
def upstream() -> Iterator[StreamUpstream]:
    server = StreamUpstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, upstream: StreamUpstream) -> MeshbatchProcess:
    routes = [route("live", "/stream/ok", stream_results=True), route("whole", "/stream/ok"),
              route("any", "/stream/any", stream_results=True, stream_index_field="i"),
              route("broken", "/stream/break/1", stream_results=True)]
    process: MeshbatchProcess = module_mesh.start(
        config([listener("main", routes)], [cluster("stream", upstream.address)]))
    return process


def together(proxy: MeshbatchProcess, prefix: str, bodies: list[Any],
             headers: list[dict[str, str]] | None = None) -> list[tuple[httpx.Response, float]]:
    """POST the bodies 150 ms apart (so they queue in order); each response with the seconds it took."""
    def post(index: int) -> tuple[httpx.Response, float]:
        time.sleep(0.15 * index)
        started = time.monotonic()
        extra = headers[index] if headers else {}
        response = client.post(f"/{prefix}/x", json=bodies[index], headers=extra)
        return response, time.monotonic() - started

    limits = httpx.Limits(max_keepalive_connections=len(bodies))
    with httpx.Client(base_url=proxy.url("main"), timeout=10, limits=limits) as client, \
            ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(post, range(len(bodies))))


def test_each_caller_is_answered_when_its_line_arrives(proxy: MeshbatchProcess, upstream: StreamUpstream) -> None:
    answers = together(proxy, "live", [{"ms": 0}, {"ms": 0}, {"ms": 1200}])
    assert [r.status_code for r, _ in answers] == [200, 200, 200]
    assert len(upstream.batches) >= 1 and len(upstream.batches[-1].items) == 3
    assert [r.json() for r, _ in answers] == [{"echo": {"ms": 0}, "i": 0}, {"echo": {"ms": 0}, "i": 1},
                                              {"echo": {"ms": 1200}, "i": 2}]
    assert max(answers[0][1], answers[1][1]) + 0.8 < answers[2][1]  # the fast callers did not wait for the slow
    assert all(r.headers["x-meshbatch-batch-size"] == "3" for r, _ in answers)
    view = httpx.get(f"{proxy.admin_url}/batchers").json()
    live = view["batchers"]["live"]
    assert live["streaming"]["stream_results"] is True and live["streaming"]["streamed_items"] >= 3
    text = httpx.get(f"{proxy.admin_url}/metrics").text
    assert metric_value(text, "meshbatch_batch_streamed_items_total", route="live") >= 3


def test_lines_matched_by_index_answer_each_caller_when_its_own_item_is_done(proxy: MeshbatchProcess) -> None:
    answers = together(proxy, "any", [{"ms": 1200}, {"ms": 0}, {"ms": 0}])
    assert [r.json() for r, _ in answers] == [{"echo": {"ms": 1200}, "i": 0}, {"echo": {"ms": 0}, "i": 1},
                                              {"echo": {"ms": 0}, "i": 2}]
    assert max(answers[1][1], answers[2][1]) + 0.8 < answers[0][1]  # not held back by the slow first item


def test_without_stream_results_every_caller_waits_for_the_whole_answer(proxy: MeshbatchProcess) -> None:
    answers = together(proxy, "whole", [{"ms": 0}, {"ms": 0}, {"ms": 1000}])
    assert [r.status_code for r, _ in answers] == [200, 200, 200]
    assert answers[0][1] >= answers[2][1] - 0.2  # the first caller waited for the last item


def test_a_broken_stream_fails_only_the_callers_without_a_line(proxy: MeshbatchProcess) -> None:
    answers = together(proxy, "broken", [{"ms": 0}, {"ms": 300}, {"ms": 300}])
    assert [r.status_code for r, _ in answers] == [200, 502, 502], [r.text for r, _ in answers]
    assert answers[0][0].json()["i"] == 0
    assert all(r.json()["reason"] in ("upstream_reset", "upstream_protocol_error") for r, _ in answers
               if r.status_code == 502)
    text = httpx.get(f"{proxy.admin_url}/metrics").text
    assert metric_value(text, "meshbatch_batch_stream_broken_total", route="broken") >= 1


def test_a_caller_whose_deadline_passes_mid_stream_gets_504_the_others_their_lines(proxy: MeshbatchProcess) -> None:
    answers = together(proxy, "live", [{"ms": 0}, {"ms": 0}, {"ms": 2000}],
                       [{}, {}, {"x-meshbatch-deadline-ms": "700"}])
    assert [r.status_code for r, _ in answers] == [200, 200, 504]
    assert answers[2][1] < 1.5
