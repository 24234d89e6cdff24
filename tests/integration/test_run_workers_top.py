"""`meshbatch top` at the admin address of a real `meshbatch run --workers 2`: the supervisor's one dashboard feed is
the workers' total (counts summed, a line per worker), `top --once` shows it at 80 columns, and `top --worker I`
shows worker I's own figures."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import httpx
import pytest

from testbed.config import simple
from testbed.upstream import UpstreamServer
from testbed.workers import accepted, send_until_both_served

pytestmark = pytest.mark.serial  # two worker processes and a supervisor start: seconds


def top(*args: str, columns: int = 80) -> str:
    env = dict(os.environ, COLUMNS=str(columns), TERM="dumb")
    result = subprocess.run([sys.executable, "-m", "meshbatch", "top", *args, "--once"], capture_output=True,
                            text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert max(len(line) for line in result.stdout.splitlines()) <= columns and "…" not in result.stdout
    return result.stdout


def endpoint_requests(text: str, address: str) -> int:
    """The `requests` figure of the endpoint's line in top's endpoints table."""
    line = next(line for line in text.splitlines() if address in line)
    # cluster, endpoint, health, active, requests, ...
    return int(line.split()[4])


def test_top_at_the_supervisor_shows_the_total_of_the_workers(mesh: Any, upstream: UpstreamServer) -> None:
    proxy = mesh.start(simple(upstream.address), run_args=("--workers", "2"))
    admin = proxy.admin_url
    sent = send_until_both_served(proxy.url("main", "/x"), admin)  # one request a connection
    own = accepted(admin)
    assert sum(own) == sent and min(own) > 0

    feed = httpx.get(admin + "/dashboard/feed", timeout=5).json()
    assert feed["routes"][0]["name"] == "all" and feed["routes"][0]["statuses"] == {"200": sent}
    assert feed["clusters"][0]["endpoints"][0]["requests"] == sent
    assert [(w["worker"], w["ready"]) for w in feed["workers"]] == [(0, True), (1, True)]
    workers = [httpx.get(f"{admin}/workers/{i}/dashboard/feed", timeout=5).json() for i in (0, 1)]
    assert [w["clusters"][0]["endpoints"][0]["requests"] for w in workers] == own
    assert len({w["pid"] for w in feed["workers"]}) == 2

    text = top("--admin", admin)
    assert "2 workers, total" in text and "plain routes" in text and "workers" in text
    assert endpoint_requests(text, upstream.address) == sent  # the total, not one worker's share
    rows = [line.split() for line in text.splitlines() if line.split()[:1] in (["0"], ["1"])]
    assert [(row[0], row[2]) for row in rows] == [("0", "ready"), ("1", "ready")]
    assert sorted(int(row[1]) for row in rows) == sorted(w["pid"] for w in feed["workers"])

    one = top("--admin", admin, "--worker", "1")
    assert "worker 1" in one and endpoint_requests(one, upstream.address) == own[1]

    for query in ("since=abc", "since=99999999999999999999999999", "since=-1&since=5", "since=" + "9" * 5000):
        answer = httpx.get(admin + "/dashboard/feed?" + query, timeout=5)
        assert answer.status_code == 200 and answer.json()["routes"][0]["statuses"] == {"200": sent}, query
    later = httpx.get(admin + "/dashboard/feed", params={"since": feed["seq"]}, timeout=5).json()
    assert all(p["seq"] > feed["seq"] for p in later["history"])  # only the points not read yet
    assert httpx.get(admin + "/dashboard/feed", headers={"host": "evil.example"}, timeout=5).status_code == 403
