"""Admin endpoints, served by the same HTTP server as the data plane on their own listener.

GET /ready         200 "LIVE" while serving, 503 "DRAINING" once draining (for load balancers and probes)
GET /metrics       Prometheus text exposition
GET /config_dump   the active snapshot: version, load time, the config as JSON
GET /clusters      endpoints with state, active requests, connections
GET /batchers      each batching queue's live state
GET /listeners     listeners with their addresses and connection counts
GET /ingest        ingest routes: backlog, oldest age, retries, dead letters (see meshbatch.ingest.admin)
POST /ingest/replay  dead letters back into the log (bearer `admin.token`; refused when none is configured)
GET /dashboard     the live dashboard (page, /dashboard/feed JSON; see meshbatch.admin.dashboard)
GET /recorder      a batching route's recent batches, the input of `meshbatch tune` (?route=NAME)
GET /ingest/dead_letters  parked events, bodies included (bearer `admin.token`, like replay)

Every request is first checked for its `Host` (meshbatch.admin.hosts: loopback, the listen address,
`admin.allowed_hosts`; a DNS-rebinding page is a 403). Every JSON answer goes through `scrub`, and the config
dump through `redact_config`: no password, token or credential of the config leaves through here. Refusals
(host, token) are counted in `meshbatch_admin_refusals_total{reason}`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from meshbatch.admin.dashboard import Dashboard
from meshbatch.admin.hosts import AdminHosts
from meshbatch.admin.target import AdminTarget
from meshbatch.config.plain import Admin
from meshbatch.config.redact import scrub
from meshbatch.errors import Forbidden, MethodNotAllowed, NoRoute, ProxyError
from meshbatch.http.message import Request, Response
from meshbatch.ingest.admin import IngestAdmin
from meshbatch.security.admin import require_admin_token


def _json(payload: Any, status: int = 200) -> Response:
    body = orjson.dumps(scrub(payload), option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    return Response(status, [(b"content-type", b"application/json")], body)


REFUSED = frozenset({401, 403})


class AdminApi:
    def __init__(self, target: AdminTarget) -> None:
        self.target = target
        self.refusals = target.metrics.counter(
            "meshbatch_admin_refusals_total",
            "Admin API requests refused, by reason (admin_host_not_allowed, bad_admin_token, ...).", ["reason"])
        self._hosts: tuple[Admin | None, AdminHosts] = (None, AdminHosts("127.0.0.1:0"))
        self.ingest = IngestAdmin(target)
        self.routes: dict[bytes, Callable[[Request], Response]] = {
            b"/ready": self.ready,
            b"/metrics": self.metrics,
            b"/stats/prometheus": self.metrics,
            b"/config_dump": self.config_dump,
            b"/clusters": self.clusters,
            b"/batchers": self.batchers,
            b"/listeners": self.listeners,
            b"/ingest": self.ingest.summary,
            b"/": self.index,
        }
        self.dashboard = Dashboard(target)
        self.routes.update(self.dashboard.routes())

    def hosts(self, admin: Admin | None) -> AdminHosts:
        """The Host check of the running config's admin block (rebuilt when a reload changed it)."""
        cached, hosts = self._hosts
        if cached is not admin:
            hosts = AdminHosts(admin.listen, admin.allowed_hosts) if admin is not None else AdminHosts("127.0.0.1:0")
            self._hosts = (admin, hosts)
        return hosts

    async def __call__(self, request: Request) -> Response:
        request.route = "admin"
        try:
            response = await self._serve(request)
        except ProxyError as exc:
            if exc.status in REFUSED:
                self.refusals.inc((exc.reason,))
            raise
        if response.status in REFUSED and response.reason:
            self.refusals.inc((response.reason,))
        return response

    async def _serve(self, request: Request) -> Response:
        admin = self.target.snapshot.config.admin
        if not self.hosts(admin).allows(request.host):
            raise Forbidden("admin_host_not_allowed", "the admin API answers loopback names, its own address and "
                            "admin.allowed_hosts only")
        if request.path == b"/ingest/replay":  # the one mutating endpoint: POST with the admin bearer token
            if request.method != b"POST":
                raise MethodNotAllowed("method_not_allowed", "replay dead letters with POST")
            return await self.ingest.replay(request)
        if request.path == b"/ingest/dead_letters" and request.method in (b"GET", b"HEAD"):
            return await self.ingest.dead_letters(request)
        endpoint = self.routes.get(request.path)
        if endpoint is None:  # anything else that may mutate needs admin.token (replay above checks its own)
            require_admin_token(admin.token if admin is not None else None, request)
            raise NoRoute("no_admin_endpoint", f"known: {', '.join(p.decode() for p in self.routes)}")
        if request.method not in (b"GET", b"HEAD"):
            raise MethodNotAllowed("method_not_allowed", "admin endpoints are read-only (GET)")
        return endpoint(request)

    def index(self, request: Request) -> Response:
        return _json({"endpoints": sorted(p.decode() for p in self.routes if p != b"/")})

    def ready(self, request: Request) -> Response:
        if self.target.draining:
            return Response(503, [(b"content-type", b"text/plain")], b"DRAINING\n")
        return Response(200, [(b"content-type", b"text/plain")], b"LIVE\n")

    def metrics(self, request: Request) -> Response:
        body = self.target.metrics.render()  # (prometheus_client is imported by the first scrape)
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        return Response(200, [(b"content-type", CONTENT_TYPE_LATEST.encode())], body)

    def config_dump(self, request: Request) -> Response:
        return _json(self.target.snapshot.dump())

    def clusters(self, request: Request) -> Response:
        return _json({"clusters": [c.summary() for c in self.target.snapshot.clusters.values()]})

    def batchers(self, request: Request) -> Response:
        return _json({"batchers": {name: b.summary() for name, b in self.target.snapshot.batchers.items()}})

    def listeners(self, request: Request) -> Response:
        return _json({"listeners": self.target.listeners_summary()})


__all__ = ["AdminApi", "AdminTarget"]
