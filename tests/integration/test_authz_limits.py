"""Hardening limits end to end: per-connection and per-identity request rates (429 with Retry-After, counted by
reason), an item larger than its batch's byte cap (413, never queued), and the admin API's mutating endpoints
behind `admin.token`."""

from __future__ import annotations

from typing import Any

import httpx

from testbed.config import cluster, config, listener, route
from testbed.raw import RawClient, get
from testbed.upstream import UpstreamServer


def test_connection_and_identity_rates(mesh: Any, upstreams: dict[str, UpstreamServer]) -> None:
    limits = {"connection_rate": {"rps": 0.01, "burst": 3}, "identity_rate": {"rps": 0.01, "burst": 5}}
    proxy = mesh.start(config([listener("main", [route("all", "echo")], limits)],
                              [cluster("echo", upstreams["a"].address)]))
    address = proxy.address("main")
    with RawClient(address) as first:
        statuses = []
        for _ in range(4):
            first.send(get("/r"))
            statuses.append(first.read_response())
        assert [r.status for r in statuses] == [200, 200, 200, 429]
        assert statuses[-1].json()["reason"] == "connection_rate_limited"
        assert int(statuses[-1].header("retry-after") or 0) >= 1
    with RawClient(address) as second:  # a new connection has its own bucket, but the same peer's is shared
        answers = []
        for _ in range(3):
            second.send(get("/r"))
            answers.append(second.read_response())
        assert [r.status for r in answers] == [200, 200, 429]
        assert answers[-1].json()["reason"] == "identity_rate_limited"


def test_an_item_larger_than_the_batch_cap_is_413(mesh: Any, upstreams: dict[str, UpstreamServer]) -> None:
    batch = {"max_bytes": 100, "max_wait_ms": 1, "upstream_path": "/batch"}
    proxy = mesh.start(config([listener("main", [route("b", "echo", batch=batch)])],
                              [cluster("echo", upstreams["a"].address)]))
    upstreams["a"].reset()
    answer = httpx.post(proxy.url("main", "/items"), content=b'"' + b"x" * 200 + b'"',
                        headers={"content-type": "application/json"}, timeout=5)
    assert answer.status_code == 413 and answer.json()["reason"] == "item_too_large"
    assert upstreams["a"].requests == []


def test_mutating_admin_endpoints_need_the_token(mesh: Any, upstreams: dict[str, UpstreamServer]) -> None:
    plain = config([listener("main", [route("all", "echo")])], [cluster("echo", upstreams["a"].address)])
    open_admin = mesh.start(plain)
    assert httpx.post(open_admin.url("admin", "/anything"), timeout=5).status_code == 403
    token = "s3cret-admin-token-0123"
    spec = config([listener("main", [route("all", "echo")])], [cluster("echo", upstreams["a"].address)])
    spec["admin"]["token"] = token
    guarded = mesh.start(spec)
    url = guarded.url("admin", "/anything")
    first = httpx.post(url, timeout=5)
    assert first.status_code == 401, first.text
    assert httpx.post(url, headers={"authorization": "Bearer wrong-token-xxxxxxxx"}, timeout=5).status_code == 401
    assert httpx.post(url, headers={"authorization": f"Bearer {token}"}, timeout=5).status_code == 404
    assert httpx.get(guarded.url("admin", "/ready"), timeout=5).status_code == 200  # reading needs none
