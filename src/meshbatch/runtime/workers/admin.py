"""The one admin view of `meshbatch run --workers N`, served by the supervisor at the configured admin address.

GET /ready            200 LIVE when every worker is ready; 503 DRAINING once draining, 503 STARTING k/N else
GET /metrics, /stats/prometheus   the workers' expositions merged (merge_metrics.py: counters and histograms
                      summed, gauges per worker with a `worker` label) and the supervisor's own series
                      (`meshbatch_workers{state}`, `meshbatch_worker_restarts_total{worker}`)
GET /batchers, /clusters, /listeners, /ingest   the total in one worker's shape, and `workers`: each one's own
                      answer (merge_json.py)
GET /config_dump      worker 0's (every worker runs the same file), with `workers`
GET /dashboard/feed   the workers' dashboard feeds as one, in one worker's shape (merge_feed.py: the figures
                      totalled, one history point a second), with `workers`: each one's own figures; what
                      `meshbatch top` reads (`top --worker I` reads worker I's own feed)
GET /workers          each worker: index, pid, ready, private admin address, restarts
ANY /workers/I/PATH   worker I's own admin API, as it is (its dashboard, recorder, dead letters, replay: an
                      ingest log is per worker, so are its dead letters); the Authorization header is passed on

Every request is checked for its `Host` as a worker's admin API does (meshbatch.admin.hosts).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from meshbatch.admin.hosts import AdminHosts
from meshbatch.config import plain
from meshbatch.config.redact import scrub
from meshbatch.errors import Forbidden, MethodNotAllowed, NoRoute
from meshbatch.http.message import Request, Response
from meshbatch.runtime.workers.fetch import FetchError, fetch
from meshbatch.runtime.workers.member import Member
from meshbatch.runtime.workers.merge_feed import FeedMerger, merged_feed
from meshbatch.runtime.workers.merge_json import total_and_workers
from meshbatch.runtime.workers.merge_metrics import Family, MetricMerger, parse, render

JSON_VIEWS = (b"/batchers", b"/clusters", b"/listeners", b"/ingest")
PASSED_HEADERS = frozenset({b"authorization", b"content-type", b"accept"})


def _json(payload: Any, status: int = 200) -> Response:
    body = orjson.dumps(scrub(payload), option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    return Response(status, [(b"content-type", b"application/json")], body)


def _text(status: int, text: str) -> Response:
    return Response(status, [(b"content-type", b"text/plain")], text.encode() + b"\n")


def _since(query: bytes) -> int:
    """`since=N` of a feed request (0 when absent or not a number)."""
    for pair in query.split(b"&"):
        name, _, value = pair.partition(b"=")
        if name == b"since" and value.isdigit() and len(value) <= 18:
            return int(value)
    return 0


def _object(body: bytes | None) -> dict[str, Any] | None:
    try:
        value = orjson.loads(body) if body is not None else None
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


class WorkersAdmin:
    def __init__(self, admin: plain.Admin, members: Callable[[], Sequence[Member]], draining: Callable[[], bool],
                 own_metrics: Callable[[], list[Family]], timeout: float = 5.0) -> None:
        self.hosts = AdminHosts(admin.listen, admin.allowed_hosts)
        self.members = members
        self.draining = draining
        self.own_metrics = own_metrics
        self.timeout = timeout
        self.merger = MetricMerger()
        self.feeds = FeedMerger()

    async def __call__(self, request: Request) -> Response:
        request.route = "admin"
        if not self.hosts.allows(request.host):
            raise Forbidden("admin_host_not_allowed", "the admin API answers loopback names, its own address and "
                            "admin.allowed_hosts only")
        path = request.path
        if path.startswith(b"/workers/"):
            return await self.passthrough(request)
        if request.method not in (b"GET", b"HEAD"):
            raise MethodNotAllowed("method_not_allowed", "the aggregated admin endpoints are read-only (GET); "
                                   "a worker's own: /workers/I/PATH")
        if path == b"/ready":
            return self.ready()
        if path in (b"/metrics", b"/stats/prometheus"):
            return await self.metrics()
        if path in JSON_VIEWS:
            return await self.json_view(request.target)
        if path == b"/dashboard/feed":
            return await self.feed(request.query)
        if path == b"/config_dump":
            answers = await self.gather(b"/config_dump")
            first = next((a for _, _, a in answers if isinstance(a, dict)), {})
            return _json({**first, "workers": len(answers)})
        if path == b"/workers":
            return _json({"workers": [m.info() for m in self.members()], "draining": self.draining()})
        if path == b"/":
            return _json({"endpoints": ["/", "/batchers", "/clusters", "/config_dump", "/dashboard/feed", "/ingest",
                                        "/listeners", "/metrics", "/ready", "/stats/prometheus", "/workers",
                                        "/workers/I/PATH"]})
        raise NoRoute("no_admin_endpoint", "known: /ready /metrics /stats/prometheus /batchers /clusters /listeners "
                      "/ingest /config_dump /dashboard/feed /workers, and /workers/I/PATH for worker I's own admin API")

    def ready(self) -> Response:
        if self.draining():
            return _text(503, "DRAINING")
        members = self.members()
        ready = sum(1 for m in members if m.ready)
        return _text(200, "LIVE") if ready == len(members) else _text(503, f"STARTING {ready}/{len(members)}")

    async def _get(self, member: Member, target: bytes) -> bytes | None:
        if member.admin is None or not member.ready:
            return None
        try:
            status, _, body = await fetch(member.admin, target, timeout=self.timeout)
        except FetchError:
            return None
        return body if status == 200 else None

    async def gather(self, target: bytes) -> list[tuple[int, int, Any]]:
        members = list(self.members())
        bodies = await asyncio.gather(*(self._get(m, target) for m in members))
        out: list[tuple[int, int, Any]] = []
        for member, body in zip(members, bodies, strict=True):
            try:
                out.append((member.index, member.pid, orjson.loads(body) if body is not None else None))
            except orjson.JSONDecodeError:
                out.append((member.index, member.pid, None))
        return out

    async def json_view(self, target: bytes) -> Response:
        return _json(total_and_workers(await self.gather(target)))

    async def feed(self, query: bytes) -> Response:
        since = _since(query)
        members = list(self.members())
        bodies = await asyncio.gather(*(self._get(m, b"/dashboard/feed?since=%d" % self.feeds.since(m.index, m.pid))
                                        for m in members))
        feeds: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        for member, body in zip(members, bodies, strict=True):
            feed = _object(body)
            if feed is not None:
                self.feeds.add(member.index, member.pid, feed, time.monotonic())
            feeds.append((member.info(), feed))
        self.feeds.settle([m.index for m in members if m.ready])
        return _json(merged_feed(feeds, self.feeds, since))

    async def metrics(self) -> Response:
        members = list(self.members())
        bodies = await asyncio.gather(*(self._get(m, b"/stats/prometheus") for m in members))
        for member, body in zip(members, bodies, strict=True):
            families = None
            if body is not None:
                try:
                    families = parse(body.decode("utf-8", "replace"))
                except ValueError:
                    families = None
            self.merger.update(member.index, member.pid, families)
        body = render(self.merger.merged(*self.own_metrics()))
        return Response(200, [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")], body)

    async def passthrough(self, request: Request) -> Response:
        index, _, rest = request.target.removeprefix(b"/workers/").partition(b"/")
        members = {m.index: m for m in self.members()}
        member = members.get(int(index)) if index.isdigit() and len(index) < 6 else None
        if member is None:
            raise NoRoute("no_such_worker", f"workers are numbered 0 to {len(members) - 1}")
        if member.admin is None or not member.ready:
            return _text(503, f"worker {member.index} is not ready")
        headers = [(k, v) for k, v in request.headers if k in PASSED_HEADERS]
        try:
            status, answer_headers, body = await fetch(member.admin, b"/" + rest, method=request.method,
                                                       headers=headers, body=request.body, timeout=30.0)
        except FetchError as exc:
            return _text(502, f"worker {member.index}: {exc}")
        kept = [(k, v) for k, v in answer_headers if k in (b"content-type", b"www-authenticate")]
        return Response(status, kept, body)


__all__ = ["WorkersAdmin"]
