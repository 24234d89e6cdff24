"""The proxies under test: their configs (written with the config builders the tests use too), the processes
(`MeshbatchProcess` of testbed: `meshbatch run` with its stderr read), and what the suite reads from them:
/proc (open file descriptors, RSS), /metrics (counters, live tasks, loop lag), the admin API, access logs."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from testbed.config import cluster, config, listener, route
from testbed.proxy import MeshbatchProcess, metric_value, write_config

from .common import wait_until

RETRY: dict[str, Any] = {"retry_on": ["connect-failure", "reset", "gateway-error"], "num_retries": 2,
                         "backoff": {"base_ms": 10, "max_ms": 50}}
BATCH: dict[str, Any] = {"max_items": 32, "max_wait_ms": 5, "codec": "json-array", "upstream_path": "/batch",
                         "max_in_flight": 4, "max_queue": 4096}


def sync_route(name: str = "sync", cluster_name: str = "svc", **extra: Any) -> dict[str, Any]:
    """A plain route under /NAME: timeout, per-try timeout and retries as a resilient mesh would set them."""
    spec: dict[str, Any] = {"timeout_ms": 2000, "per_try_timeout_ms": 400, "retry": RETRY}
    spec.update(extra)
    return route(name, cluster_name, {"path_prefix": f"/{name}"}, **spec)


def batched_route(name: str = "batched", cluster_name: str = "svc", batch: dict[str, Any] | None = None,
                  **extra: Any) -> dict[str, Any]:
    """A json-array batching route under /NAME to the upstreams' /batch."""
    spec: dict[str, Any] = {"timeout_ms": 2000, "per_try_timeout_ms": 400, "retry": RETRY,
                            "batch": {**BATCH, **(batch or {})}}
    spec.update(extra)
    return route(name, cluster_name, {"path_prefix": f"/{name}"}, **spec)


def svc_cluster(endpoints: list[str], name: str = "svc", **extra: Any) -> dict[str, Any]:
    """The upstream cluster: short idle timeout (connections turn over), an endpoint breaker and outlier
    detection (a dead or hung endpoint leaves the rotation after 3 gateway failures)."""
    spec: dict[str, Any] = {
        "lb": "round_robin", "idle_timeout_ms": 1000, "connect_timeout_ms": 250,
        "circuit_breakers": {"endpoint": {"consecutive_failures": 3, "failure_on": "gateway-error", "open_ms": 500}},
        "outlier_detection": {"consecutive_gateway_failure": 3, "consecutive_5xx": 3, "base_ejection_time_ms": 1000,
                              "max_ejection_percent": 34, "interval_ms": 1000},
    }
    spec.update(extra)
    return cluster(name, *endpoints, **spec)


def access_log(path: Path) -> dict[str, Any]:
    """Every answer logged (with the caller's x-request-id): the proxy's own per-id record."""
    return {"path": str(path), "sample": 1.0, "flush_ms": 100}


def standard(endpoints: list[str], *, listen: str = "127.0.0.1:0", reuse_port: bool = False,
             log: Path | None = None, routes: list[dict[str, Any]] | None = None,
             clusters: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    """One listener `main` with a plain route /sync and a batching route /batched to the cluster `svc`."""
    main = listener("main", routes if routes is not None else [sync_route(), batched_route()])
    main["listen"] = listen
    if reuse_port:
        main["reuse_port"] = True
    out = config([main], clusters if clusters is not None else [svc_cluster(endpoints)], drain_timeout_ms=5000,
                 **extra)
    if log is not None:
        out["access_log"] = access_log(log)
    return out


# -- a running proxy ----------------------------------------------------------------------------------
class Proxy:
    """`meshbatch run` on a config dict written to `path`; what the suite measures of it."""

    def __init__(self, path: Path, cfg: dict[str, Any], prefix: tuple[str, ...] = (),
                 run_args: tuple[str, ...] = ()) -> None:
        self.path = path
        self.config = cfg
        write_config(path, cfg)
        self.process = MeshbatchProcess(path, prefix=prefix, run_args=run_args)

    @property
    def pid(self) -> int:
        return self.process.proc.pid

    def address(self, name: str = "main") -> tuple[str, int]:
        return self.process.address(name)

    @property
    def alive(self) -> bool:
        return self.process.proc.poll() is None

    # /proc ---------------------------------------------------------------------------------------
    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    # admin API -----------------------------------------------------------------------------------
    def get(self, path: str, timeout: float = 5.0) -> bytes:
        with urllib.request.urlopen(self.process.url("admin", path), timeout=timeout) as answer:
            data: bytes = answer.read()
        return data

    def json(self, path: str) -> Any:
        return json.loads(self.get(path))

    def metrics(self) -> str:
        return self.get("/metrics").decode()

    def metric(self, name: str, text: str | None = None, **labels: str) -> float:
        return metric_value(text if text is not None else self.metrics(), name, **labels)

    def tasks(self, text: str | None = None) -> int:
        return int(self.metric("meshbatch_asyncio_tasks", text))

    def answered(self, route_name: str, text: str | None = None) -> int:
        """Answers the proxy wrote on `route_name` (its own counter)."""
        return int(self.metric("meshbatch_requests_total", text, route=route_name))

    def batchers_idle(self) -> bool:
        try:
            batchers = self.json("/batchers").get("batchers", {})
        except (urllib.error.URLError, OSError):
            return False
        return all(b.get("queued", 0) == 0 and b.get("in_flight", 0) == 0 for b in batchers.values())

    def resources(self) -> dict[str, float]:
        """Open fds and RSS from /proc, then live tasks and loop lag from /metrics (in that order: the scrape's
        own connection is not counted)."""
        fds, rss = self.fds(), self.rss()
        text = self.metrics()
        return {"fds": fds, "rss_mib": rss / 2**20, "tasks": self.tasks(text),
                "lag_max_ms": 1000 * self.metric("meshbatch_event_loop_lag_max_seconds", text)}

    def floor(self) -> dict[str, float]:
        """Resources with no traffic: the baseline that settling must come back to."""
        return self.resources()

    def settle(self, floor: dict[str, float], timeout: float = 8.0) -> dict[str, Any]:
        """Wait (up to `timeout`) until open fds and live tasks are back to `floor` and the batchers are empty;
        returns what was measured last, with `settled` telling whether it came back."""
        last: dict[str, Any] = {}

        def back() -> bool:
            nonlocal last
            last = self.resources()
            return last["fds"] <= floor["fds"] and last["tasks"] <= floor["tasks"] and self.batchers_idle()

        try:
            wait_until(back, timeout, "the proxy to settle", interval=0.1)
            last["settled"] = True
        except Exception:
            last["settled"] = False
        last["fds_floor"], last["tasks_floor"] = floor["fds"], floor["tasks"]
        return last

    # lifecycle -----------------------------------------------------------------------------------
    def terminate(self, timeout: float = 15.0) -> int:
        return self.process.terminate(timeout)

    def kill(self) -> None:
        self.process.kill()


def read_access_log(path: Path) -> tuple[Counter[str], Counter[str]]:
    """From an access log: answers per request id, and answers per route."""
    ids: Counter[str] = Counter()
    routes: Counter[str] = Counter()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return ids, routes
    for line in text.splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        ids[str(entry.get("request_id"))] += 1
        routes[str(entry.get("route"))] += 1
    return ids, routes


__all__ = ["BATCH", "RETRY", "Proxy", "access_log", "batched_route", "cluster", "config", "listener", "metric_value",
           "read_access_log", "route", "standard", "svc_cluster", "sync_route", "write_config"]
