"""A real batch-capable upstream for the batching integration tests: the consumer SDK's `BatchApp` behind an ASGI
app served by uvicorn (its h11 protocol, independent of the proxy's parser) in a background thread.

The request path picks the codec and the behaviour, so one server serves every route of a test proxy:

    .../<codec>/<behaviour>[/<arg>][?ms=N]

    codec        json-array | ndjson | envelope
    ok           the SDK's answer: item i -> {"echo": item, "i": i, "n": n}; with `envelope`, an item body
                 {"status": S, "headers": {...}} answers with that status and those headers (201 by default)
    shuffled     envelope only: like ok, with the responses in reverse order
    drop         envelope only: like ok, without the responses of the items whose body has "drop": true
    bad-status   envelope only: like ok, the items whose body has "bad": true get status "abc"
    wrong-count  one result more than items (`wrong-count/fewer`: one fewer)
    not-json     200 with a body that is not JSON
    not-array    200 with a JSON object (json-array, ndjson: not one document per item)
    status/CODE  that status for the whole batch, with `Retry-After: 7`
    poison       like ok, but a batch holding an item whose body has "poison": true is refused as a whole, as an
                 upstream refuses a body it cannot read: 400 (`poison/CODE`: that status) and a JSON error
    most/N       like ok for a batch of at most N items; a bigger one is refused 503 as a whole (an upstream that
                 runs out of memory above a batch size)
    mirror       each item's answer is the exact bytes of its request body (json-array, ndjson: the request body
                 itself; envelope: each entry's `body` as written), for tests of exact round trips
    ?ms=N        wait N ms before answering (any behaviour)

Every batch is recorded (`batches`) with its arrival time on `time.monotonic()` (CLOCK_MONOTONIC, shared by
every process of the machine, so a test compares it with deadlines it computed itself), its headers, query,
the item bodies and, for `envelope`, the request entries. `hold()` makes batches wait after they are
recorded, until `release(n)` lets n of them through (or `release()` opens the gate): tests build queues
behind a busy in-flight slot without sleeping.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import msgspec
import orjson
import uvicorn

from meshbatch.consumer import ItemResponse
from meshbatch.consumer.core import BatchApp
from meshbatch.consumer.wire import WIRES, WireError

CODECS = ("json-array", "ndjson", "envelope")


@dataclass
class Received:
    """One batch request as the upstream saw it."""

    at: float  # time.monotonic() at arrival (after the body was read)
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    codec: str
    behaviour: str
    body: bytes
    items: list[Any]  # the item bodies, in batch order ([] if the batch could not be parsed)
    ids: list[str]  # envelope ids (positions "1".."n" for the other codecs)
    requests: list[dict[str, Any]] = field(default_factory=list)  # envelope request entries

    @property
    def size(self) -> int:
        return len(self.items)

    def late(self) -> list[Any]:
        """Items whose body carries a "deadline" (time.monotonic() seconds) earlier than the batch's arrival."""
        return [item for item in self.items
                if isinstance(item, dict) and isinstance(item.get("deadline"), float) and item["deadline"] < self.at]


def _echo(items: list[Any]) -> list[Any]:
    n = len(items)
    return [{"echo": item, "i": i, "n": n} for i, item in enumerate(items)]


def _envelope_results(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    n = len(items)
    for i, item in enumerate(items):
        spec = item if isinstance(item, dict) else {}
        status = spec.get("status", 201)
        headers = {"x-item-index": str(i), **spec.get("headers", {})}
        out.append(ItemResponse(status if isinstance(status, int) else 201, {"echo": item, "i": i, "n": n}, headers))
    return out


def _split(path: str) -> tuple[str, str, str]:
    segments = [s for s in path.split("/") if s]
    for index, segment in enumerate(segments):
        if segment in CODECS:
            rest = segments[index + 1:]
            return segment, (rest[0] if rest else "ok"), (rest[1] if len(rest) > 1 else "")
    return "json-array", "ok", ""


class BatchUpstream:
    """`BatchUpstream().start()`; `address` for the cluster; `batches` as received; `stop()` at the end."""

    def __init__(self, name: str = "batch-upstream") -> None:
        self.name = name
        self.host = "127.0.0.1"
        self.port = 0
        self.batches: list[Received] = []
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._held = False  # the gate; touched only in the server's loop
        self._permits = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._apps = {codec: BatchApp(_envelope_results if codec == "envelope" else _echo, codec)
                      for codec in CODECS}

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # lifecycle -----------------------------------------------------------------------------------
    def start(self) -> BatchUpstream:
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on accepted sockets of that proto, and without it
        # uvicorn's separate head and body writes wait for the peer's delayed ACK (40 ms per answer).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self._asgi, http="h11", interface="asgi3", lifespan="off", log_level="warning",
                                access_log=False, timeout_keep_alive=60, timeout_graceful_shutdown=1, backlog=1024)
        self._server = server = uvicorn.Server(config)
        ready = threading.Event()

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            ready.set()
            await server.serve(sockets=[sock])

        self._thread = threading.Thread(target=lambda: asyncio.run(main()), name=self.name, daemon=True)
        self._thread.start()
        ready.wait(10)
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "the batch upstream did not start"
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self.release()
            self._server.should_exit = True
            self._thread.join(10)

    def _in_loop(self, fn: Callable[[], None]) -> None:
        assert self._loop is not None

        async def run() -> None:
            fn()

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(5)

    def hold(self) -> None:
        """From now on every batch waits (after being recorded) until `release()` lets it through."""

        def close() -> None:
            self._held, self._permits = True, 0

        self._in_loop(close)

    def release(self, n: int | None = None) -> None:
        """Let `n` batches through (the waiting ones first, oldest first, then the next to arrive) and keep
        holding the others; with no `n`, open the gate."""

        def open_gate() -> None:
            if n is None:
                self._held = False
            else:
                self._permits += n
            while self._waiting and (not self._held or self._permits > 0):
                if self._held:
                    self._permits -= 1
                waiter = self._waiting.popleft()
                if not waiter.done():
                    waiter.set_result(None)

        if self._loop is not None and self._loop.is_running():
            self._in_loop(open_gate)

    async def _pass_gate(self) -> None:
        if not self._held:
            return
        if self._permits > 0:
            self._permits -= 1
            return
        assert self._loop is not None
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiting.append(waiter)
        await waiter

    def reset(self) -> None:
        self.release()
        with self._cond:
            self.batches.clear()

    # records -------------------------------------------------------------------------------------
    def snapshot(self) -> list[Received]:
        with self._cond:
            return list(self.batches)

    def wait_batches(self, n: int, timeout: float = 5.0, path: str = "") -> list[Received]:
        """Wait until at least `n` batches whose path starts with `path` arrived; returns them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [b for b in self.batches if b.path.startswith(path)]
                if len(got) >= n:
                    return got
                left = deadline - time.monotonic()
                assert left > 0, f"{len(got)} of {n} batches under {path!r} arrived within {timeout}s"
                self._cond.wait(left)

    def items(self, path: str = "") -> list[Any]:
        """Every item received under `path`, in arrival order."""
        return [item for b in self.snapshot() if b.path.startswith(path) for item in b.items]

    # serving -------------------------------------------------------------------------------------
    async def _asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        at = time.monotonic()
        path = scope["path"]
        query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        codec, behaviour, arg = _split(path)
        items: list[Any] = []
        ids: list[str] = []
        requests: list[dict[str, Any]] = []
        try:
            items, ids = WIRES.get(codec)().parse(body)
            if codec == "envelope":
                requests = orjson.loads(body)["requests"]
        except (WireError, KeyError, TypeError):
            pass
        record = Received(at, scope["method"], path, query, headers, codec, behaviour, body, items, ids, requests)
        with self._cond:
            self.batches.append(record)
            self._cond.notify_all()
        await self._pass_gate()
        if "ms" in query:
            await asyncio.sleep(int(query["ms"]) / 1000)
        status, content_type, payload, extra = await self._answer(codec, behaviour, arg, body, items, ids)
        response_headers = [(b"content-type", content_type), (b"content-length", str(len(payload)).encode()),
                            *extra]
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": payload})

    async def _answer(self, codec: str, behaviour: str, arg: str, body: bytes, items: list[Any],
                      ids: list[str]) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
        json_type = b"application/json"
        if behaviour == "poison" and any(_flag(item, "poison") for item in items):
            return int(arg or 400), b"application/problem+json", b'{"error": "the batch holds an item that cannot ' \
                b'be processed"}', [(b"x-upstream-detail", b"poison")]
        if behaviour == "most" and len(items) > int(arg):
            return 503, json_type, b'{"error": "batch too large for the test upstream"}', []
        if behaviour == "mirror":
            return 200, WIRES.get(codec)().content_type, _mirror(codec, body), []
        if behaviour == "status":
            return int(arg), json_type, b'{"error": "refused by the test upstream"}', [(b"retry-after", b"7")]
        if behaviour == "not-json":
            return 200, b"text/plain", b"this is not json <html>", []
        if behaviour == "not-array":
            return 200, json_type, b'{"results": "not here"}', []
        status, content_type, payload = await self._apps[codec].process(body)
        if status != 200:
            return status, content_type, payload, []
        if behaviour == "wrong-count":
            if codec == "envelope":
                raise AssertionError("wrong-count is for json-array and ndjson; use drop with envelope")
            results = _echo(items)
            results = results[:-1] if arg == "fewer" else [*results, {"extra": True}]
            if codec == "ndjson":
                return 200, b"application/x-ndjson", b"".join(orjson.dumps(r) + b"\n" for r in results), []
            return 200, json_type, orjson.dumps(results), []
        if codec == "envelope" and behaviour in ("shuffled", "drop", "bad-status"):
            answer = orjson.loads(payload)
            by_id = dict(zip(ids, items, strict=True))
            responses = answer["responses"]
            if behaviour == "shuffled":
                responses.reverse()
            elif behaviour == "drop":
                responses = [r for r in responses if not _flag(by_id.get(r["id"]), "drop")]
            else:
                for r in responses:
                    if _flag(by_id.get(r["id"]), "bad"):
                        r["status"] = "abc"
            return 200, json_type, orjson.dumps({"responses": responses}), []
        return status, content_type, payload, []


def _mirror(codec: str, body: bytes) -> bytes:
    if codec != "envelope":
        return body  # already one result per item: the items themselves, byte for byte
    entries = msgspec.json.decode(body, type=dict[str, list[msgspec.Raw]])["requests"]
    responses = []
    for raw in entries:
        entry = msgspec.json.decode(raw, type=dict[str, msgspec.Raw])
        item = b'{"id":' + bytes(entry["id"]) + b',"status":200'
        if "body" in entry:
            item += b',"body":' + bytes(entry["body"])
        responses.append(item + b"}")
    return b'{"responses":[' + b",".join(responses) + b"]}"


def _flag(item: Any, name: str) -> bool:
    return isinstance(item, dict) and item.get(name) is True


# -- the callers' side: helpers of the batching integration tests -------------------------------------------

BATCH_HEADERS = ("x-meshbatch-batch-id", "x-meshbatch-batch-size", "x-meshbatch-queue-ms", "x-meshbatch-flush")


def serving() -> Iterator[BatchUpstream]:
    """A started upstream, stopped after: a module's fixture, `upstream = pytest.fixture(scope="module",
    name="upstream")(serving)`."""
    server = BatchUpstream().start()
    yield server
    server.stop()


def batch_route(name: str, prefix: str, upstream_path: str, cluster: str = "batch", timeout_ms: int = 5000,
                **batch: Any) -> dict[str, Any]:
    """A batching route matching `prefix`; defaults to one batch in flight, so a held batch makes a queue."""
    spec: dict[str, Any] = {"max_items": 64, "max_in_flight": 1, "upstream_path": upstream_path}
    spec.update(batch)
    if "codec" not in spec:
        spec["codec"] = _split(upstream_path)[0]
    return {"name": name, "match": {"path_prefix": prefix}, "cluster": cluster, "timeout_ms": timeout_ms,
            "batch": spec}


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, message: str = "condition") -> Any:
    """Poll `predicate` (every 5 ms) until it is truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {message}"
        time.sleep(0.005)


class Callers:
    """Concurrent HTTP callers on threads (httpx, one shared pool): `post` returns a Future of the response.

    `sent` counts the requests started and `answered` the responses (or errors) received, so a test can assert
    that every request got exactly one answer."""

    def __init__(self, base_url: str, admin_url: str, workers: int = 64) -> None:
        import concurrent.futures

        import httpx

        self.base_url = base_url
        self.admin_url = admin_url
        self.client = httpx.Client(base_url=base_url, timeout=15,
                                   limits=httpx.Limits(max_connections=256, max_keepalive_connections=256))
        self.admin = httpx.Client(base_url=admin_url, timeout=5)
        self.pool = concurrent.futures.ThreadPoolExecutor(workers)
        self.sent = 0
        self.answered = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=False)
        self.client.close()
        self.admin.close()

    def __enter__(self) -> Callers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, path: str, body: Any = None, *, content: bytes | None = None,
             headers: dict[str, str] | None = None, method: str = "POST") -> Any:
        """One request, on the calling thread: the httpx response. `body` may be a function, called just before
        the request goes (a body that carries a deadline counted from its sending, as the proxy counts it)."""
        with self._lock:
            self.sent += 1
        try:
            if callable(body):
                body = body()
            if content is None:
                content = orjson.dumps(body)
                headers = {"content-type": "application/json", **(headers or {})}
            return self.client.request(method, path, content=content, headers=headers)
        finally:
            with self._lock:
                self.answered += 1

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        """`call` on a worker thread: a concurrent.futures.Future of the response."""
        return self.pool.submit(self.call, path, body, **kwargs)

    # the admin API -------------------------------------------------------------------------------
    def batcher(self, route: str) -> dict[str, Any]:
        summary: dict[str, Any] = self.admin.get("/batchers").json()["batchers"][route]
        return summary

    def wait_queued(self, route: str, n: int, timeout: float = 5.0) -> dict[str, Any]:
        """Wait until `route`'s batcher holds exactly `n` queued items; returns its summary."""
        summary: dict[str, Any] = wait_until(lambda: (s := self.batcher(route))["queued"] == n and s,
                                             timeout, f"{n} items queued on {route}")
        return summary

    def metrics(self) -> str:
        text: str = self.admin.get("/metrics").text
        return text

    def metric(self, name: str, **labels: str) -> float:
        from testbed.proxy import metric_value

        return metric_value(self.metrics(), name, **labels)


class Plug:
    """Occupies a route's only in-flight slot with one held batch, so later callers queue behind it.

        with Plug(callers, upstream, "/ja", route="ja") as plug:
            ... post, callers.wait_queued(...)
        plug.response   # released on exit (the gate opens), the plug's own answer
    """

    def __init__(self, callers: Callers, upstream: BatchUpstream, path: str, route: str,
                 headers: dict[str, str] | None = None, release_all: bool = True) -> None:
        self.callers, self.upstream, self.path, self.route = callers, upstream, path, route
        self.headers = headers
        self.release_all = release_all
        self.future: Any = None

    def __enter__(self) -> Plug:
        self.upstream.hold()
        before = len(self.upstream.snapshot())
        self.future = self.callers.post(self.path, {"plug": True}, headers=self.headers)
        wait_until(lambda: len(self.upstream.snapshot()) > before, 5, "the plug batch to reach the upstream")
        wait_until(lambda: self.callers.batcher(self.route)["in_flight"] == 1, 5, "the plug to be in flight")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.release_all or exc[0] is not None:
            self.upstream.release()

    @property
    def response(self) -> Any:
        return self.future.result(10)


__all__ = ["BATCH_HEADERS", "CODECS", "BatchUpstream", "Callers", "Plug", "Received", "batch_route", "serving",
           "wait_until"]
