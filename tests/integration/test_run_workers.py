"""`meshbatch run --workers 2`: two real worker processes on one port under a supervisor; its one admin view,
SIGHUP and SIGTERM reaching both, a SIGKILLed worker started again, one ingest log per worker."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_ingest_services import Producer, ingest_config, wait_until

from meshbatch.cli import main
from testbed.config import simple
from testbed.proxy import metric_value
from testbed.stores import sqlite_rows
from testbed.upstream import UpstreamServer
from testbed.workers import accepted, send_until_both_served

WORKERS = ("--workers", "2")


def test_two_workers_serve_one_port_one_admin_view_reload_and_drain(mesh: Any, upstream: UpstreamServer) -> None:
    proxy = mesh.start(simple(upstream.address), run_args=WORKERS)
    admin = proxy.admin_url
    sent = send_until_both_served(proxy.url("main", "/x"), admin)
    view = httpx.get(admin + "/listeners", timeout=5).json()
    assert view["listeners"][0]["accepted"] == sum(accepted(admin)) == sent  # the total is the workers' sum
    assert {w["listeners"][0]["address"] for w in view["workers"]} == {proxy.addresses["main"]}
    metrics = httpx.get(admin + "/stats/prometheus", timeout=5).text
    assert metric_value(metrics, "meshbatch_requests_total", listener="main", status="200") == sent
    assert metric_value(metrics, "meshbatch_workers", state="ready") == 2
    assert metric_value(metrics, "process_resident_memory_bytes", worker="1") > 0  # gauges: one per worker
    assert httpx.get(admin + "/ready", timeout=5).text == "LIVE\n"
    clusters = httpx.get(admin + "/clusters", timeout=5).json()
    assert [c["name"] for c in clusters["clusters"]] == ["echo"] and len(clusters["workers"]) == 2
    assert "batchers" in httpx.get(admin + "/batchers", timeout=5).json()
    own = httpx.get(admin + "/workers/1/listeners", timeout=5).json()  # a worker's own admin API
    assert own["listeners"][0]["accepted"] == accepted(admin)[1]
    page = httpx.get(admin + "/workers/0/dashboard", timeout=5)  # a worker's dashboard, its assets and feed
    assert page.status_code == 200 and 'src="dashboard/app.js"' in page.text  # relative: found under /workers/0/
    assert httpx.get(admin + "/workers/0/dashboard/app.js", timeout=5).status_code == 200
    assert "routes" in httpx.get(admin + "/workers/0/dashboard/feed?since=0", timeout=5).json()
    for path in ("/workers/7/ready", "/workers/x/ready", "/workers/99999999999/ready", "/workers/-1/ready",
                 "/nothing", "/dashboard"):
        assert httpx.get(admin + path, timeout=5).status_code == 404, path
    assert httpx.post(admin + "/batchers", content=b"{}", timeout=5).status_code == 405
    assert httpx.get(admin + "/ready", headers={"host": "evil.example"}, timeout=5).status_code == 403
    assert httpx.get(admin + "/workers/0/ready", headers={"host": "evil.example"}, timeout=5).status_code == 403
    assert httpx.post(admin + "/workers/0/ingest/replay", timeout=5).status_code == 403  # no admin.token: refused

    mark = proxy.mark()
    proxy.send_signal(signal.SIGHUP)
    proxy.wait_for_line("meshbatch: reloaded version=2 workers=2", start=mark)
    proxy.wait_for_line("meshbatch.worker.0: reloaded", start=mark)
    proxy.wait_for_line("meshbatch.worker.1: reloaded", start=mark)
    assert httpx.get(proxy.url("main", "/x"), timeout=5).status_code == 200
    good = proxy.config_path.read_text(encoding="utf-8")
    proxy.config_path.write_text("listeners: []\n", encoding="utf-8")  # a config with errors: both reject it
    mark = proxy.mark()
    proxy.send_signal(signal.SIGHUP)
    proxy.wait_for_line("meshbatch: reload rejected workers_reloaded=0 workers_rejected=2", start=mark)
    proxy.config_path.write_text(good, encoding="utf-8")
    assert httpx.get(proxy.url("main", "/x"), timeout=5).status_code == 200  # the old config keeps serving

    assert proxy.terminate() == 0
    for needle in ("meshbatch.worker.0: drained", "meshbatch.worker.1: drained", "meshbatch: drained unfinished=0"):
        proxy.wait_for_line(needle, timeout=1, start=mark)


def test_a_killed_worker_is_started_again_and_the_port_keeps_serving(mesh: Any, upstream: UpstreamServer) -> None:
    proxy = mesh.start(simple(upstream.address), run_args=WORKERS)
    admin, url = proxy.admin_url, proxy.url("main", "/x")
    outcome: list[BaseException] = []

    def slow_request() -> None:  # the upstream answers in 5 s, the client gives up reading after 4
        try:
            httpx.get(proxy.url("main", "/slow?ms=5000"), timeout=httpx.Timeout(5, read=4))
        except httpx.HTTPError as exc:
            outcome.append(exc)

    caller = threading.Thread(target=slow_request)
    caller.start()
    holding = wait_until(lambda: [w for w in httpx.get(admin + "/listeners", timeout=5).json()["workers"]
                                  if w["listeners"][0]["connections"]], 5, "the slow request to be accepted")
    index, victim = holding[0]["worker"], holding[0]["pid"]
    mark = proxy.mark()
    os.kill(victim, signal.SIGKILL)  # with the slow request in flight
    caller.join(10)
    # Its client is not left hanging until its own timeout: the connection closes with the process.
    assert outcome and not isinstance(outcome[0], httpx.TimeoutException), outcome
    proxy.wait_for_line(f"worker {index} (pid {victim})", start=mark)
    for _ in range(20):  # meanwhile, the other worker answers every new connection
        assert httpx.get(url, timeout=5).status_code == 200
    proxy.wait_for_line(f"meshbatch.worker.{index}: ready", start=mark)
    workers = httpx.get(admin + "/workers", timeout=5).json()["workers"]
    assert workers[index]["pid"] != victim and workers[index]["restarts"] == 1 and workers[1 - index]["restarts"] == 0
    metrics = httpx.get(admin + "/stats/prometheus", timeout=5).text
    assert metric_value(metrics, "meshbatch_worker_restarts_total", worker=str(index)) == 1
    send_until_both_served(url, admin)  # the new worker takes connections again
    assert proxy.terminate() == 0


def test_each_worker_has_its_own_ingest_log_and_every_event_is_delivered_once(mesh: Any, tmp_path: Path) -> None:
    sink, log = tmp_path / "sink.db", tmp_path / "log.db"
    config = ingest_config(ack="fsync", log={"path": str(log)}, sink={"type": "sqlite", "path": str(sink)})
    proxy = mesh.start(config, "ingest.yaml", run_args=WORKERS)
    producer = Producer(proxy.url("main", "/events"))
    producer.send(range(160), threads=16)  # 16 connections: both workers take some (all on one: 2 in 65,536)
    assert len(producer.acked) == 160
    rows = wait_until(lambda: (r := sqlite_rows(sink)) and len(r) >= 160 and r, 10, "all events in the sink")
    assert sorted(rows) == sorted(f"k-{i}" for i in range(160))  # every one, exactly once
    assert log.exists() and (tmp_path / "log.w1.db").exists()  # worker 0 keeps the path, worker 1 its own
    for worker in (0, 1):  # each worker accepted events into its own log, and delivered them
        own = httpx.get(f"{proxy.admin_url}/workers/{worker}/stats/prometheus", timeout=5).text
        assert metric_value(own, "meshbatch_requests_total", status="202") > 0
    ingest = httpx.get(proxy.admin_url + "/ingest", timeout=5).json()
    assert len(ingest["workers"]) == 2
    assert proxy.terminate() == 0


@pytest.mark.parametrize(("value", "says"), [("0", "at least 1"), ("-2", "at least 1"), ("100000", "at most"),
                                             ("many", "a number"), ("", "a number")])
def test_hostile_worker_counts_are_refused_before_anything_starts(tmp_path: Path, value: str, says: str,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("listeners: [{name: main, listen: '127.0.0.1:0'}]\n", encoding="utf-8")
    assert main(["run", str(path), "--workers", value]) == 2
    assert says in capsys.readouterr().err


ARABIC_INDIC_THREE = '"\\u0663"'


@pytest.mark.parametrize("value", ["0", "-1", "'two'", "1.5", "2000", "true", "null", "[2]", ARABIC_INDIC_THREE])
def test_a_bad_workers_key_is_a_config_error_with_its_path(tmp_path: Path, value: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"workers: {value}\nlisteners: [{{name: main, listen: '127.0.0.1:0'}}]\n", encoding="utf-8")
    assert main(["check", str(path)]) == 1
    assert "workers" in capsys.readouterr().err


def test_a_port_in_use_stops_the_start_with_a_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = tmp_path / "c.yaml"
        path.write_text(f"admin: null\nlisteners: [{{name: main, listen: '127.0.0.1:{port}'}}]\n", encoding="utf-8")
        assert main(["run", str(path), "--workers", "2"]) == 1
    assert "cannot start" in capsys.readouterr().err


def test_a_workers_key_beyond_the_cores_is_refused_at_run_naming_the_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("workers: 1000\nlisteners: [{name: main, listen: '127.0.0.1:0'}]\n", encoding="utf-8")
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: workers: 1000: at most" in err and "--workers" not in err
