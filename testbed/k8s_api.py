"""A small Kubernetes API server for EndpointSlices, with the list/watch semantics a real one has.

It runs on 127.0.0.1 in a thread of its own (its own event loop), so that tests on any loop, or a `meshbatch
run` subprocess, talk to it over real sockets, and tests change its state with plain method calls:

- `GET /apis/discovery.k8s.io/v1/namespaces/NS/endpointslices?labelSelector=K=V`: a list with the collection's
  `resourceVersion`; `limit` and `continue` page through one consistent snapshot (an expired token: 410);
- `...&watch=true&resourceVersion=RV`: a chunked stream of JSON events, one per line, for every change after
  RV (replayed from the history, then live); RV older than the compaction point: an `ERROR` event whose
  object is a 410 Status (what the API server sends for "too old resource version"); `allowWatchBookmarks`:
  `BOOKMARK` events on `bookmark()`; `timeoutSeconds`: the stream ends then;
- a bearer token is required (401 otherwise); `fail(status, n)` answers the next n requests with a Status.

`end_watches()` ends every open stream (as a restarted API server would), `compact()` forgets the history,
and `expire_watches()` sends the 410 ERROR event to every open stream. `wait(check)` blocks until `check(self)`
holds, re-checked at each request and each stream opened or closed (from async code: `asyncio.to_thread`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

T = TypeVar("T")
PATH = "/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"


def _true(value: str | None) -> bool:
    """Query booleans as the API server reads them: anything but false/0 (the Python client sends `True`)."""
    return value is not None and value.lower() not in ("false", "0")


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


def endpoint_slice(name: str, service: str, endpoints: list[dict[str, Any]],
                   ports: list[dict[str, Any]] | None = None, namespace: str = "default",
                   address_type: str = "IPv4") -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": namespace, "labels": {"kubernetes.io/service-name": service}},
            "addressType": address_type, "endpoints": endpoints,
            "ports": ports if ports is not None else [{"name": "http", "port": 80, "protocol": "TCP"}]}


def endpoint(ip: str, ready: bool | None = True, serving: bool | None = None, terminating: bool | None = None,
             zone: str | None = None, node: str | None = None, pod: str | None = None) -> dict[str, Any]:
    conditions: dict[str, Any] = {}
    for key, value in (("ready", ready), ("serving", serving), ("terminating", terminating)):
        if value is not None:
            conditions[key] = value
    out: dict[str, Any] = {"addresses": [ip], "conditions": conditions}
    if zone:
        out["zone"] = zone
    if node:
        out["nodeName"] = node
    if pod:
        out["targetRef"] = {"kind": "Pod", "name": pod, "namespace": "default"}
    return out


@dataclass
class _Watch:
    namespace: str
    selector: dict[str, str]
    bookmarks: bool
    queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)


@dataclass
class FakeKubernetes:
    token: str = "test-token"
    ssl_context: ssl.SSLContext | None = None
    port: int = 0
    version: int = 1000
    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    history: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    compacted: int = 0
    requests: list[dict[str, str]] = field(default_factory=list)
    watch_requests: int = 0
    _watches: list[_Watch] = field(default_factory=list)
    _failures: list[tuple[int, str]] = field(default_factory=list)
    _snapshots: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None
    _cond: threading.Condition = field(default_factory=threading.Condition)

    # running it ----------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> FakeKubernetes:
        started = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_get(PATH, self._endpointslices)
            self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
            loop.run_until_complete(site.start())
            self.port = self._runner.addresses[0][1]
            started.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-kubernetes", daemon=True)
        self._thread.start()
        assert started.wait(10), "the fake API server did not start"
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._on_loop(self.end_watches_now)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def _on_loop(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the server's loop (state is only touched there) and return its result."""
        assert self._loop is not None
        done = threading.Event()
        out: list[Any] = []

        def call() -> None:
            try:
                out.append(fn())
            finally:
                done.set()

        self._loop.call_soon_threadsafe(call)
        assert done.wait(10)
        return out[0]  # type: ignore[no-any-return]

    def kubeconfig(self, path: Path, namespace: str = "default", token: str | None = None) -> Path:
        cluster: dict[str, Any] = {"server": self.url}
        if self.ssl_context is not None:
            cluster["certificate-authority"] = str(path.parent / "fake-k8s-ca.crt")
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": cluster}],
            "users": [{"name": "tester", "user": {"token": token or self.token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "tester", "namespace": namespace}}],
        }), encoding="utf-8")
        return path

    # changing its state (from any thread) --------------------------------------------------------------
    def apply(self, obj: dict[str, Any]) -> int:
        """Create or replace an object; returns its new resourceVersion."""
        return self._on_loop(lambda: self._change("apply", obj))

    def delete(self, name: str, namespace: str = "default") -> int:
        return self._on_loop(lambda: self._change("delete", {"metadata": {"name": name, "namespace": namespace}}))

    def bookmark(self) -> int:
        """A BOOKMARK at the current version to every watch that asked for bookmarks; returns how many."""
        def send() -> int:
            sent = 0
            for watch in self._watches:
                if watch.bookmarks:
                    watch.queue.put_nowait({"type": "BOOKMARK", "object": {
                        "kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
                        "metadata": {"resourceVersion": str(self.version)}}})
                    sent += 1
            return sent
        return self._on_loop(send)

    def compact(self) -> None:
        """Forget the history up to now: a watch or a continue token from before this point gets 410."""
        def run() -> None:
            self.version += 1
            self.compacted = self.version
            self.history.clear()
            self._snapshots.clear()
        self._on_loop(run)

    def end_watches(self) -> int:
        return self._on_loop(self.end_watches_now)

    def end_watches_now(self) -> int:
        count = len(self._watches)
        for watch in self._watches:
            watch.queue.put_nowait(None)
        self._watches.clear()
        self._poke()
        return count

    def expire_watches(self) -> int:
        """Send every open watch the ERROR event of a resourceVersion too old, then end it."""
        def run() -> int:
            for watch in self._watches:
                watch.queue.put_nowait({"type": "ERROR", "object": status(410, "Expired", "too old resource version")})
            return self.end_watches_now()
        self.compact()
        return self._on_loop(run)

    def fail(self, code: int, count: int = 1, reason: str = "InternalError") -> None:
        self._on_loop(lambda: self._failures.extend([(code, reason)] * count))

    def clear_failures(self) -> None:
        self._on_loop(self._failures.clear)

    def wait(self, check: Callable[[FakeKubernetes], bool], timeout: float = 5.0) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: check(self), timeout), "the API server did not see that in time"

    def _poke(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def open_watches(self) -> int:
        return self._on_loop(self.open_watches_now)

    def open_watches_now(self) -> int:
        return len(self._watches)

    def request_log(self) -> list[dict[str, str]]:
        return self._on_loop(lambda: list(self.requests))

    # the state (on the loop) ---------------------------------------------------------------------------
    def _change(self, kind: str, obj: dict[str, Any]) -> int:
        meta = obj["metadata"]
        key = (meta.get("namespace", "default"), meta["name"])
        self.version += 1
        if kind == "delete":
            old = self.objects.pop(key)
            event = "DELETED"
            stored = json.loads(json.dumps(old))
            stored["metadata"]["resourceVersion"] = str(self.version)
        else:
            event = "MODIFIED" if key in self.objects else "ADDED"
            stored = json.loads(json.dumps(obj))
            stored["metadata"].setdefault("namespace", "default")
            stored["metadata"]["resourceVersion"] = str(self.version)
            self.objects[key] = stored
        self.history.append((self.version, event, stored))
        for watch in self._watches:
            if self._matches(watch.namespace, watch.selector, stored):
                watch.queue.put_nowait({"type": event, "object": stored})
        return self.version

    @staticmethod
    def _matches(namespace: str, selector: dict[str, str], obj: dict[str, Any]) -> bool:
        meta = obj["metadata"]
        labels = meta.get("labels") or {}
        return meta.get("namespace") == namespace and all(labels.get(k) == v for k, v in selector.items())

    # HTTP ------------------------------------------------------------------------------------------------
    async def _endpointslices(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        self.requests.append({"path": request.path, **query})
        if _true(query.get("watch")):
            self.watch_requests += 1
        self._poke()
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response(status(401, "Unauthorized", "Unauthorized"), status=401)
        if self._failures:
            code, reason = self._failures.pop(0)
            return web.json_response(status(code, reason, f"injected {code}"), status=code)
        selector = dict(part.split("=", 1) for part in query.get("labelSelector", "").split(",") if "=" in part)
        namespace = request.match_info["namespace"]
        if _true(query.get("watch")):
            return await self._watch(request, namespace, selector)
        return self._list(namespace, selector, query)

    def _list(self, namespace: str, selector: dict[str, str], query: Any) -> web.Response:
        token = query.get("continue", "")
        if token:
            version, offset = json.loads(base64.b64decode(token))
            if version not in self._snapshots:
                return web.json_response(status(410, "Expired", "The provided continue parameter is too old"),
                                         status=410)
            items = self._snapshots[version]
        else:
            version, offset = self.version, 0
            items = sorted((o for o in self.objects.values() if self._matches(namespace, selector, o)),
                           key=lambda o: o["metadata"]["name"])
            self._snapshots[version] = items
        limit = int(query.get("limit", "0") or 0) or len(items) or 1
        page = items[offset:offset + limit]
        meta: dict[str, Any] = {"resourceVersion": str(version)}
        if offset + limit < len(items):
            meta["continue"] = base64.b64encode(json.dumps([version, offset + limit]).encode()).decode()
        return web.json_response({"kind": "EndpointSliceList", "apiVersion": "discovery.k8s.io/v1",
                                  "metadata": meta, "items": page})

    async def _watch(self, request: web.Request, namespace: str, selector: dict[str, str]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        since = request.query.get("resourceVersion", "")
        watch = _Watch(namespace, selector, _true(request.query.get("allowWatchBookmarks")))
        if since in ("", "0"):  # "any version": the current state as ADDED events first
            for obj in sorted(self.objects.values(), key=lambda o: o["metadata"]["name"]):
                if self._matches(namespace, selector, obj):
                    watch.queue.put_nowait({"type": "ADDED", "object": obj})
        elif int(since) < self.compacted:
            watch.queue.put_nowait({"type": "ERROR", "object": status(410, "Expired", "too old resource version")})
            watch.queue.put_nowait(None)
        else:
            for version, event, obj in self.history:
                if version > int(since) and self._matches(namespace, selector, obj):
                    watch.queue.put_nowait({"type": event, "object": obj})
        self._watches.append(watch)
        self._poke()
        timeout = float(request.query.get("timeoutSeconds", "0") or 0) or None
        try:
            async with asyncio.timeout(timeout):
                while (event := await watch.queue.get()) is not None:
                    await response.write(json.dumps(event).encode() + b"\n")
        except (TimeoutError, ConnectionResetError):
            pass
        finally:
            if watch in self._watches:
                self._watches.remove(watch)
            self._poke()
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response


__all__ = ["FakeKubernetes", "endpoint", "endpoint_slice", "status"]
