"""Batched answers carry `via: 1.1 meshbatch` like plain ones (the listener's `via` setting, on by default):
answers relayed from an upstream batch and answers replayed for an idempotency key; `via: false` leaves it out."""

from __future__ import annotations

from typing import Any

import pytest

from testbed.batch_upstream import BatchUpstream, Callers, batch_route, serving
from testbed.config import cluster, config, listener
from testbed.proxy import MeshbatchProcess

upstream = pytest.fixture(scope="module", name="upstream")(serving)


@pytest.fixture(scope="module")
def proxy(module_mesh: Any, upstream: BatchUpstream) -> MeshbatchProcess:
    def routes() -> list[dict[str, Any]]:
        return [batch_route("items", "/items/", "/b/json-array/ok", max_items=1),
                batch_route("kept", "/kept/", "/b/envelope/ok", max_items=1, dedup_window_ms=60_000)]
    on = listener("on", routes())
    off = listener("off", [{**r, "name": r["name"] + "_off"} for r in routes()], via=False)
    process: MeshbatchProcess = module_mesh.start(config([on, off], [cluster("batch", upstream.address)]))
    return process


def _call(proxy: MeshbatchProcess, name: str, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    with Callers(proxy.url(name), proxy.admin_url) as callers:
        return callers.call(path, body, headers=headers)


def test_a_batched_answer_carries_via(proxy: MeshbatchProcess) -> None:
    answer = _call(proxy, "on", "/items/x", {"n": 1})
    assert answer.status_code == 200, answer.text
    assert answer.headers.get_list("via") == ["1.1 meshbatch"]
    assert "x-meshbatch-batch-id" in answer.headers


def test_a_replayed_answer_carries_via_once(proxy: MeshbatchProcess) -> None:
    key = {"idempotency-key": "via-1"}
    first = _call(proxy, "on", "/kept/x", {"order": "v"}, key)
    again = _call(proxy, "on", "/kept/x", {"order": "v"}, key)
    assert again.headers["idempotent-replayed"] == "true"
    assert first.headers.get_list("via") == again.headers.get_list("via") == ["1.1 meshbatch"]


def test_via_false_leaves_batched_answers_alone(proxy: MeshbatchProcess) -> None:
    answer = _call(proxy, "off", "/items/x", {"n": 1})
    assert answer.status_code == 200, answer.text
    assert "via" not in answer.headers
    key = {"idempotency-key": "via-2"}
    _call(proxy, "off", "/kept/x", {"order": "w"}, key)
    again = _call(proxy, "off", "/kept/x", {"order": "w"}, key)
    assert again.headers["idempotent-replayed"] == "true" and "via" not in again.headers
