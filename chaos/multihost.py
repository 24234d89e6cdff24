"""The multi-host scenario's mesh: three hosts as network namespaces (testbed/netns.py), each with its own
sidecar (`meshbatch run` inside the namespace) and SPIFFE certificate (`meshbatch ca`), and the services the
hosts share on the bridge's address in the root namespace: etcd, a DNS server, and a relay to PostgreSQL.

    producer (on A) -> A's sidecar -> mTLS -> B's / C's sidecar (batching) -> consumer (on B / C) -> PostgreSQL

A's sidecar has two routes to the same consumer hosts: `/etcd/` through a cluster discovered from etcd (a key
per host under PREFIX) and `/dns/` through one discovered from DNS (A records of NAME, TTL 1 s). Both check
the consumers' SPIFFE IDs, retry within the cluster's retry budget, and eject failing endpoints (outlier
detection). B and C accept only mTLS from the mesh's trust domain and batch the orders to their consumer.
"""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from testbed.config import cluster, config, listener, route
from testbed.dns_server import TinyDns
from testbed.etcd import Etcd
from testbed.netns import Network
from testbed.pki import Pki
from testbed.relay import Relay

from .common import REPO, ChaosError
from .mesh import Proxy

TD = "mesh.test"
PREFIX = "/mesh/consumers/"
NAME = "consumers.mesh.test."
INBOUND = 8443  # every consumer host's sidecar, on its own address
CONSUMER = 9000  # every consumer, on its host's loopback
CONSUMERS = ("b", "c")
RETRY: dict[str, Any] = {"retry_on": ["connect-failure", "reset", "gateway-error"], "num_retries": 2,
                         "backoff": {"base_ms": 20, "max_ms": 100}}
BUDGET: dict[str, Any] = {"budget_percent": 20, "min_retry_concurrency": 3, "min_retries_per_second": 10,
                          "window_ms": 10_000}
OUTLIERS: dict[str, Any] = {"consecutive_gateway_failure": 3, "consecutive_5xx": 3, "interval_ms": 500,
                            "base_ejection_time_ms": 3000, "max_ejection_percent": 50}
BATCH: dict[str, Any] = {"max_items": 32, "max_wait_ms": 10, "codec": "json-array", "upstream_path": "/batch",
                         "max_in_flight": 8, "max_queue": 4096}


def outbound_cluster(name: str, discovery: dict[str, Any]) -> dict[str, Any]:
    return cluster(name, discovery=discovery, lb="round_robin", connect_timeout_ms=300, idle_timeout_ms=5000,
                   tls={"mode": "strict", "server_ids": [f"spiffe://{TD}/ns/shop/sa/consumer-*"]},
                   outlier_detection=OUTLIERS, circuit_breakers={"retry_budget": BUDGET})


def outbound_route(name: str, cluster_name: str) -> dict[str, Any]:
    return route(name, cluster_name, {"path_prefix": f"/{name}/"}, timeout_ms=6000, per_try_timeout_ms=1500,
                 retry=RETRY)


@dataclass
class MultiHost:
    folder: Path
    pg_url: str  # PostgreSQL as the root namespace reaches it; the hosts reach it through a relay on the bridge
    network: Network = field(init=False)
    etcd: Etcd | None = None
    dns: TinyDns | None = None
    relay: Relay | None = None
    sidecars: dict[str, Proxy] = field(default_factory=dict)
    consumers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step of `start`

    _last: float = 0.0

    def __post_init__(self) -> None:
        self.network = Network(["a", *CONSUMERS], self.folder / "net")

    def start(self, table: str) -> MultiHost:
        try:
            self._start(table)
        except BaseException:
            self.close()
            raise
        return self

    def _step(self, name: str) -> None:
        now = time.monotonic()
        self.timings[name] = round(now - self._last, 2)
        self._last = now

    def _start(self, table: str) -> None:
        self._last = time.monotonic()
        net = self.network.start()
        gw = net.gateway
        self._step("namespaces")
        self.etcd = Etcd(self.folder / "etcd", host=gw, prefix=PREFIX).start()
        self._step("etcd")
        self.dns = TinyDns(gw)
        target = urlsplit(self.pg_url)
        self.relay = Relay((target.hostname or "127.0.0.1", target.port or 5432), host=gw)
        self.relay.up()
        pg = relayed(self.pg_url, gw, self.relay.port)
        for host in CONSUMERS:
            log = (self.folder / f"consumer-{host}.log").open("ab")
            proc = net.popen(host, [sys.executable, "-m", "testbed.order_consumer", "--listen",
                                    f"127.0.0.1:{CONSUMER}", "--pg", pg, "--table", table, "--host", host],
                             stdout=subprocess.PIPE, stderr=log, cwd=REPO)
            self.consumers[host] = proc
        self._step("consumers started")
        pki = Pki(self.folder / "pki", TD)
        pki.issue("producer", "/ns/shop/sa/producer")
        for host in CONSUMERS:
            pki.issue(f"consumer-{host}", f"/ns/shop/sa/consumer-{host}")
        for host in CONSUMERS:  # in etcd and DNS before A's sidecar asks
            self.announce(host)
        self._step("certificates")
        configs = {"a": self.outbound_config(pki)}
        configs.update({h: self.inbound_config(pki, h) for h in CONSUMERS})
        with ThreadPoolExecutor(3) as pool:  # each `meshbatch run` takes a second or so to start: in parallel
            started = {h: pool.submit(Proxy, self.folder / f"sidecar-{h}.yaml", cfg, ("ip", "netns", "exec",
                                                                                     net.hosts[h].ns))
                       for h, cfg in configs.items()}
            self.sidecars = {h: f.result() for h, f in started.items()}
        self._step("sidecars")
        for host, proc in self.consumers.items():
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != b"ready":
                raise ChaosError(f"consumer on {host} did not start: see {self.folder}/consumer-{host}.log")
        self._step("consumers ready")

    # -- configs ---------------------------------------------------------------------------------------
    def outbound_config(self, pki: Pki) -> dict[str, Any]:
        assert self.etcd is not None and self.dns is not None
        gw = self.network.gateway
        etcd = {"type": "etcd", "urls": [self.etcd.url], "prefix": PREFIX, "timeout_ms": 1000}
        dns = {"type": "dns", "name": NAME, "record": "A", "port": INBOUND, "nameservers": [f"{gw}:{self.dns.port}"],
               "timeout_ms": 500, "refresh_ms": 1000}
        main = listener("main", [outbound_route("etcd", "consumers"), outbound_route("dns", "consumers-dns")])
        return config([main], [outbound_cluster("consumers", etcd), outbound_cluster("consumers-dns", dns)],
                      admin=True, identity=pki.identity("producer"), drain_timeout_ms=3000) | {
            "admin": {"listen": f"{self.network.hosts['a'].address}:0"}}

    def inbound_config(self, pki: Pki, host: str) -> dict[str, Any]:
        address = self.network.hosts[host].address
        batched = route("orders", "consumer", {"path_prefix": "/"}, timeout_ms=5000, batch=BATCH)
        inbound = listener("in", [batched], tls={"mode": "strict", "trust_domains": [TD]})
        inbound["listen"] = f"{address}:{INBOUND}"
        return config([inbound], [cluster("consumer", f"127.0.0.1:{CONSUMER}", connect_timeout_ms=500)],
                      identity=pki.identity(f"consumer-{host}"), drain_timeout_ms=3000) | {
            "admin": {"listen": f"{address}:0"}}

    # -- discovery ---------------------------------------------------------------------------------------
    def announce(self, host: str) -> None:
        """The host's sidecar in etcd and in DNS."""
        assert self.etcd is not None and self.dns is not None
        address = self.network.hosts[host].address
        self.etcd.put(host, f"{address}:{INBOUND}")
        records = self.dns.zone.setdefault((NAME, "A"), [])
        if address not in records:
            records.append(address)

    def withdraw(self, host: str) -> None:
        """The host's sidecar out of etcd and out of DNS (the name stays, with the other hosts)."""
        assert self.etcd is not None and self.dns is not None
        address = self.network.hosts[host].address
        self.etcd.delete(host)
        self.dns.zone[(NAME, "A")] = [a for a in self.dns.zone.get((NAME, "A"), []) if a != address]

    # -- teardown ---------------------------------------------------------------------------------------
    def close(self) -> None:
        for proxy in self.sidecars.values():
            if proxy.alive:
                try:
                    proxy.terminate(5)
                except Exception:  # the namespace's teardown kills whatever is left
                    proxy.kill()
        for proc in self.consumers.values():
            if proc.poll() is None:
                proc.terminate()
        if self.etcd is not None:
            self.etcd.stop()
        if self.dns is not None:
            self.dns.close()
        if self.relay is not None:
            self.relay.down()
        self.network.close()


def relayed(url: str, host: str, port: int) -> str:
    """`url` with its host and port replaced (credentials, database and options kept)."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{credentials}@{host}:{port}" if credentials else f"{host}:{port}"))


__all__ = ["CONSUMERS", "NAME", "PREFIX", "TD", "MultiHost"]
