"""Kubernetes discovery against an in-process API server with real list/watch semantics (testbed/k8s_api):
the source lists a Service's EndpointSlices, watches them from the list's resourceVersion, resumes after a
stream ends, lists again after 410 Gone, follows bookmarks, keeps the last set through API failures, reads
in-cluster credentials, and a `meshbatch run` proxy routes real traffic to what it discovers, following changes
without a restart."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshbatch.config.model import Discovery, EndpointSpec
from meshbatch.discovery import kubernetes_api
from meshbatch.discovery.kubernetes import KubernetesSource
from testbed.config import config, listener, route
from testbed.k8s_api import FakeKubernetes, endpoint, endpoint_slice
from testbed.upstream import UpstreamServer


class Watched:
    """A running source and what it applied; waits on a condition notified at each step, never on a timer."""

    def __init__(self, source: KubernetesSource) -> None:
        self.source = source
        self.sets: list[list[EndpointSpec]] = []
        self.changed = asyncio.Condition()
        for name in ("on_event", "relist", "fail"):
            self._notify_after(name)

    def _notify_after(self, name: str) -> None:
        original = getattr(self.source, name)

        def poke() -> None:
            asyncio.get_running_loop().create_task(self._notify())

        if asyncio.iscoroutinefunction(original):
            async def wrapped_async(*args: Any) -> Any:
                try:
                    return await original(*args)
                finally:
                    poke()
            setattr(self.source, name, wrapped_async)
        else:
            def wrapped(*args: Any) -> Any:
                try:
                    return original(*args)
                finally:
                    poke()
            setattr(self.source, name, wrapped)

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    def apply(self, specs: list[EndpointSpec]) -> None:
        self.sets.append(specs)
        asyncio.get_running_loop().create_task(self._notify())

    @property
    def addresses(self) -> set[str]:
        return {spec.address for spec in self.sets[-1]} if self.sets else set()

    async def until(self, check: Callable[[], bool], timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(check)


@pytest.fixture
def api() -> Iterator[FakeKubernetes]:
    server = FakeKubernetes().start()
    yield server
    server.stop()


@contextlib.asynccontextmanager
async def running(discovery: dict[str, Any]) -> AsyncIterator[Watched]:
    source = KubernetesSource(Discovery.model_validate({"type": "kubernetes", **discovery}), "svc")
    watched = Watched(source)
    task = asyncio.get_running_loop().create_task(source.run(watched.apply))
    try:
        yield watched
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def two_pods(ready_b: bool = True) -> dict[str, Any]:
    return endpoint_slice("web-a", "web", [
        endpoint("10.0.0.1", zone="z1", node="n1", pod="web-1"),
        endpoint("10.0.0.2", ready=ready_b, zone="z2", node="n2", pod="web-2"),
    ], ports=[{"name": "http", "port": 8080}, {"name": "metrics", "port": 9090}])


async def test_lists_then_watches_endpoints_added_removed_and_not_ready(api: FakeKubernetes, tmp_path: Path) -> None:
    api.apply(two_pods(ready_b=False))
    api.apply(endpoint_slice("other", "other", [endpoint("10.9.9.9")]))  # another Service: never seen
    kubeconfig = api.kubeconfig(tmp_path / "kubeconfig")
    async with running({"service": "web", "port_name": "http", "kubeconfig": str(kubeconfig)}) as w:
        await w.until(lambda: bool(w.sets))
        assert w.addresses == {"10.0.0.1:8080"}  # 10.0.0.2 is not ready
        assert w.sets[-1][0].metadata == {"zone": "z1", "node": "n1", "pod": "web-1"}
        listed = w.source.resource_version

        api.apply(two_pods(ready_b=True))  # becomes ready
        await w.until(lambda: w.addresses == {"10.0.0.1:8080", "10.0.0.2:8080"})
        api.apply(endpoint_slice("web-b", "web", [endpoint("10.0.1.1")], ports=[{"name": "http", "port": 8081}]))
        await w.until(lambda: "10.0.1.1:8081" in w.addresses)  # each slice has its own port number
        api.delete("web-a")
        await w.until(lambda: w.addresses == {"10.0.1.1:8081"})

        summary = w.source.summary()
        assert summary["lists"] == 1 and summary["events"] == 3 and summary["slices"] == 1
        watch = next(r for r in api.request_log() if r.get("watch") == "True")
        assert watch["resourceVersion"] == listed
        assert watch["allowWatchBookmarks"] == "True"
        assert watch["labelSelector"] == "kubernetes.io/service-name=web"
        assert 240 <= int(watch["timeoutSeconds"]) <= 360


async def opened(api: FakeKubernetes, watch_requests: int) -> None:
    """Wait (on the API server's condition, off the loop) until that many watches were asked for and one is open."""
    await asyncio.to_thread(api.wait, lambda s: s.watch_requests >= watch_requests and s.open_watches_now() == 1,
                            20.0)


async def test_a_stream_that_ends_is_resumed_from_the_last_version_without_listing(api: FakeKubernetes,
                                                                                 tmp_path: Path) -> None:
    api.apply(two_pods())
    kubeconfig = api.kubeconfig(tmp_path / "kubeconfig")
    async with running({"service": "web", "port": 8080, "kubeconfig": str(kubeconfig)}) as w:
        await w.until(lambda: len(w.addresses) == 2)
        for i in range(3):  # each stream carries a bookmark, then ends (a stream that ends at once, empty, is
            await opened(api, i + 1)  # an error the source backs off from)
            api.bookmark()
            assert api.end_watches() == 1
        await opened(api, 4)
        assert w.source.counts["watch_restarts"] == 3
        version = api.delete("web-a")
        await w.until(lambda: w.addresses == set())
        assert w.source.resource_version == str(version)
        assert w.source.counts["lists"] == 1 and w.source.counts["expired"] == 0
        watches = [r for r in api.request_log() if r.get("watch") == "True"]
        assert len({r["resourceVersion"] for r in watches}) == 1  # nothing changed: each resumed where it was
        assert w.source.status.failures == 0


async def test_bookmarks_move_the_version_the_next_watch_starts_from(api: FakeKubernetes, tmp_path: Path) -> None:
    api.apply(two_pods())
    api.apply(endpoint_slice("unrelated", "other", [endpoint("10.9.9.9")]))
    kubeconfig = api.kubeconfig(tmp_path / "kubeconfig")
    async with running({"service": "web", "port": 8080, "kubeconfig": str(kubeconfig)}) as w:
        await w.until(lambda: len(w.addresses) == 2)
        await opened(api, 1)
        for _ in range(3):  # changes to other Services move the collection's version; bookmarks carry it
            api.apply(endpoint_slice("unrelated", "other", [endpoint("10.9.9.8")]))
        assert api.bookmark() == 1
        await w.until(lambda: w.source.counts["bookmarks"] == 1)
        assert w.source.resource_version == str(api.version)
        api.end_watches()
        await opened(api, 2)
        watches = [r for r in api.request_log() if r.get("watch") == "True"]
        assert watches[-1]["resourceVersion"] == str(api.version)
        assert len(w.sets) == 1  # nothing changed for this Service: nothing applied again


async def test_an_expired_resource_version_lists_again(api: FakeKubernetes, tmp_path: Path) -> None:
    api.apply(two_pods())
    kubeconfig = api.kubeconfig(tmp_path / "kubeconfig")
    async with running({"service": "web", "port_name": "http", "kubeconfig": str(kubeconfig)}) as w:
        await w.until(lambda: len(w.addresses) == 2)
        await opened(api, 1)
        api.expire_watches()  # 410 inside the open stream (the watch cache moved on): list again
        await w.until(lambda: w.source.counts["lists"] == 2)
        assert w.source.counts["expired"] == 1
        await opened(api, 2)
        # the source is cut off while the history is compacted and the Service changes: when it is back, its
        # version is gone (410 at the watch's start), and the list it makes instead has the changes
        api.fail(503, count=1000)
        api.end_watches()
        await w.until(lambda: w.source.status.failures >= 1)
        api.compact()
        api.delete("web-a")
        api.apply(endpoint_slice("web-c", "web", [endpoint("10.0.2.1")], ports=[{"name": "http", "port": 7000}]))
        assert w.addresses == {"10.0.0.1:8080", "10.0.0.2:8080"}  # the last set stays meanwhile
        api.clear_failures()
        await w.until(lambda: w.addresses == {"10.0.2.1:7000"})
        assert w.source.counts["expired"] == 2 and w.source.counts["lists"] == 3
        assert w.source.status.last_error == ""


async def test_api_failures_keep_the_last_set_and_the_source_recovers(api: FakeKubernetes, tmp_path: Path) -> None:
    api.apply(two_pods())
    kubeconfig = api.kubeconfig(tmp_path / "kubeconfig")
    async with running({"service": "web", "port": 8080, "kubeconfig": str(kubeconfig)}) as w:
        await w.until(lambda: len(w.addresses) == 2)
        api.fail(500, count=2)
        api.end_watches()
        await w.until(lambda: w.source.status.failures >= 2)
        assert "500" in w.source.summary()["last_error"]  # type: ignore[operator]
        assert len(w.addresses) == 2  # the last set stays
        api.delete("web-a")
        await w.until(lambda: w.addresses == set())
    wrong = api.kubeconfig(tmp_path / "wrong", token="not-the-token")
    async with running({"service": "web", "kubeconfig": str(wrong)}) as w:
        await w.until(lambda: w.source.status.failures >= 1)
        assert "401" in w.source.status.last_error and not w.sets


async def test_terminating_endpoints_serve_only_when_none_is_ready(api: FakeKubernetes, tmp_path: Path) -> None:
    api.apply(endpoint_slice("web-a", "web", [
        endpoint("10.0.0.1", ready=False, serving=True, terminating=True, zone="z1"),
        endpoint("10.0.0.2", ready=False, serving=False, terminating=True),
        endpoint("10.0.0.3", ready=True),
    ]))
    kubeconfig = api.kubeconfig(tmp_path / "kubeconfig")
    async with running({"service": "web", "kubeconfig": str(kubeconfig)}) as w:
        await w.until(lambda: bool(w.sets))
        assert w.addresses == {"10.0.0.3:80"}
        api.apply(endpoint_slice("web-a", "web", [
            endpoint("10.0.0.1", ready=False, serving=True, terminating=True, zone="z1"),
            endpoint("10.0.0.2", ready=False, serving=False, terminating=True),
        ]))
        await w.until(lambda: w.addresses == {"10.0.0.1:80"})
        assert w.sets[-1][0].metadata == {"zone": "z1", "terminating": "true"}
        assert w.source.summary()["terminating_fallback"] is True


async def test_a_large_list_is_read_in_pages(api: FakeKubernetes, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kubernetes_api, "PAGE", 2)
    for i in range(5):
        api.apply(endpoint_slice(f"web-{i}", "web", [endpoint(f"10.0.3.{i}")]))
    kubeconfig = api.kubeconfig(tmp_path / "kubeconfig")
    async with running({"service": "web", "kubeconfig": str(kubeconfig)}) as w:
        await w.until(lambda: len(w.addresses) == 5)
    lists = [r for r in api.request_log() if r.get("watch") != "True"]
    assert [r.get("limit") for r in lists] == ["2", "2", "2"] and "continue" in lists[1]


# -- in-cluster credentials: the service account's token and CA, HTTPS ---------------------------------------
def _tls_files(folder: Path) -> tuple[Path, ssl.SSLContext]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    ca = folder / "ca.crt"
    ca.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(ca, folder / "server.key")
    return ca, context


async def test_in_cluster_credentials_use_the_service_account(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    _, context = _tls_files(account)
    (account / "token").write_text("pod-token")
    (account / "namespace").write_text("shop")
    api = FakeKubernetes(token="pod-token", ssl_context=context).start()
    try:
        api.apply(endpoint_slice("web-a", "web", [endpoint("10.0.0.7")], namespace="shop"))
        monkeypatch.setattr(kubernetes_api, "SERVICE_ACCOUNT", account)
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(api.port))
        async with running({"service": "web"}) as w:
            await w.until(lambda: w.addresses == {"10.0.0.7:80"})
            assert w.source.summary()["credentials"] == "in-cluster"
            assert w.source.namespace == "shop"
    finally:
        api.stop()


# -- a real proxy: `meshbatch run` with kubernetes discovery, real sockets ----------------------------------
def _served(proxy: Any, n: int = 30) -> Counter[str]:
    url = proxy.url("main", "/")
    with httpx.Client(timeout=5) as client:
        return Counter(client.get(url).json().get("server", "?") for _ in range(n))


def _wait_until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.05)


def _addresses(proxy: Any) -> set[str]:
    state = httpx.get(proxy.url("admin", "/clusters"), timeout=5).json()["clusters"][0]
    return {e["address"] for e in state["endpoints"]}


def _pod(upstream: UpstreamServer, **extra: Any) -> dict[str, Any]:
    return endpoint(upstream.host, pod=f"pod-{upstream.name}", **extra)


def test_a_proxy_routes_to_the_discovered_endpoints_and_follows_changes(
        mesh: Any, upstreams: dict[str, UpstreamServer], tmp_path: Path) -> None:
    api = FakeKubernetes().start()
    try:
        a, b, c = upstreams["a"], upstreams["b"], upstreams["c"]
        # one slice per pod, each with its own port (all on 127.0.0.1 here)
        for upstream in (a, b):
            api.apply(endpoint_slice(f"web-{upstream.name}", "web", [_pod(upstream)],
                                     ports=[{"name": "http", "port": upstream.port}], namespace="shop"))
        kubeconfig = api.kubeconfig(tmp_path / "kubeconfig", namespace="shop")
        discovery = {"type": "kubernetes", "service": "web", "port_name": "http", "kubeconfig": str(kubeconfig)}
        proxy = mesh.start(config([listener("main", [route("all", "web")])],
                                  [{"name": "web", "discovery": discovery}]))
        _wait_until(lambda: _addresses(proxy) == {a.address, b.address})  # on a busy machine: after the start
        assert set(_served(proxy)) == {"a", "b"}
        state = httpx.get(proxy.url("admin", "/clusters"), timeout=5).json()["clusters"][0]
        assert state["discovery"]["type"] == "kubernetes" and state["discovery"]["namespace"] == "shop"
        assert {e["metadata"].get("pod") for e in state["endpoints"]} == {"pod-a", "pod-b"}

        api.apply(endpoint_slice("web-c", "web", [_pod(c)], ports=[{"name": "http", "port": c.port}],
                                 namespace="shop"))
        api.apply(endpoint_slice("web-a", "web", [_pod(a, ready=False)], ports=[{"name": "http", "port": a.port}],
                                 namespace="shop"))
        _wait_until(lambda: _addresses(proxy) == {b.address, c.address})
        assert set(_served(proxy)) == {"b", "c"}

        api.expire_watches()  # 410: the proxy's source lists again and keeps serving
        api.delete("web-b", namespace="shop")
        _wait_until(lambda: _addresses(proxy) == {c.address})
        assert set(_served(proxy)) == {"c"}
        assert proxy.proc.poll() is None
    finally:
        api.stop()
