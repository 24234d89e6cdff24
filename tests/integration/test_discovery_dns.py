"""DNS discovery against a tiny DNS server of the test's own on 127.0.0.1: A records with a configured port
and SRV records (the way a Kubernetes headless Service is found), re-resolved when the TTL runs out."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from meshbatch.config.model import Discovery
from meshbatch.discovery.dns import DnsSource
from testbed.config import config, listener, route
from testbed.dns_server import TinyDns
from testbed.fleet import Fleet, load, request_bytes
from testbed.proxy import MeshbatchProcess


@pytest.fixture
def nameserver() -> Iterator[TinyDns]:
    server = TinyDns()
    yield server
    server.close()


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    fleet = Fleet().start("a", "b", "c")
    yield fleet
    fleet.close()


def served(proxy: MeshbatchProcess, n: int = 60) -> Counter[str]:
    results = asyncio.run(load(proxy.address("main"), [request_bytes("GET", "/")] * n, 3))
    return Counter(r.server if r.status == 200 else str(r.status) for r in results)


def addresses(proxy: MeshbatchProcess) -> set[str]:
    body = httpx.get(proxy.url("admin", "/clusters"), timeout=5).json()
    return {e["address"] for e in body["clusters"][0]["endpoints"]}


def wait_until(check: Any, timeout: float = 6.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.05)


def srv(fleet: Fleet, *names: str) -> list[str]:
    return [f"0 {10 * (i + 1)} {fleet[n].port} {n}.svc.test." for i, n in enumerate(names)]


def test_srv_records_are_followed_as_they_change(mesh: Any, fleet: Fleet, nameserver: TinyDns) -> None:
    zone = nameserver.zone
    for n in "abc":
        zone[(f"{n}.svc.test.", "A")] = ["127.0.0.1"]
    zone[("_http._tcp.svc.test.", "SRV")] = srv(fleet, "a", "b")
    discovery = {"type": "dns", "name": "_http._tcp.svc.test", "record": "SRV",
                 "nameservers": [f"127.0.0.1:{nameserver.port}"]}
    proxy = mesh.start(config([listener("main", [route("all", "svc")])],
                              [{"name": "svc", "discovery": discovery}]))
    assert set(served(proxy)) == {"a", "b"}
    zone[("_http._tcp.svc.test.", "SRV")] = srv(fleet, "b", "c")
    wait_until(lambda: addresses(proxy) == {fleet["b"].address, fleet["c"].address})
    assert set(served(proxy)) == {"b", "c"}


def test_a_records_with_a_port_and_a_vanishing_name(mesh: Any, fleet: Fleet, nameserver: TinyDns) -> None:
    nameserver.zone[("api.svc.test.", "A")] = ["127.0.0.1"]
    discovery = {"type": "dns", "name": "api.svc.test", "port": fleet["a"].port,
                 "nameservers": [f"127.0.0.1:{nameserver.port}"]}
    proxy = mesh.start(config([listener("main", [route("all", "svc")])],
                              [{"name": "svc", "discovery": discovery}]))
    assert served(proxy) == Counter({"a": 60})
    del nameserver.zone[("api.svc.test.", "A")]  # NXDOMAIN: the Service has no endpoints any more
    wait_until(lambda: addresses(proxy) == set())
    assert set(served(proxy, 6)) == {"503"}
    nameserver.zone[("api.svc.test.", "A")] = ["127.0.0.1"]
    wait_until(lambda: addresses(proxy) == {fleet["a"].address})
    assert served(proxy) == Counter({"a": 60})


async def test_the_source_respects_the_ttl_and_survives_a_dead_server(nameserver: TinyDns) -> None:
    nameserver.zone[("x.test.", "A")] = ["127.0.0.1"]
    source = DnsSource(Discovery(type="dns", name="x.test", port=80, timeout_ms=300,
                                 nameservers=[f"127.0.0.1:{nameserver.port}"]), "svc")
    specs, ttl = await source.resolve()
    assert [s.address for s in specs] == ["127.0.0.1:80"] and ttl == 1.0
    seen: list[list[str]] = []
    task = asyncio.get_running_loop().create_task(source.run(lambda s: seen.append([e.address for e in s])))
    await asyncio.sleep(0.1)
    assert seen == [["127.0.0.1:80"]] and source.next_in == 1.0
    nameserver.close()  # no answers any more: the last set stays, and the failure shows
    await asyncio.sleep(1.6)
    task.cancel()
    assert seen == [["127.0.0.1:80"]]
    assert source.status.failures >= 1 and "Timeout" in source.status.last_error
