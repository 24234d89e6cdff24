"""Admin endpoints of ingestion, served by `meshbatch.admin.api`:

GET  /ingest                         each ingest route: backlog, oldest age, in flight, retries, dead letters, sink
GET  /ingest/dead_letters?route=R&limit=N   the oldest dead letters of a route (default 100), bodies included
POST /ingest/replay                  dead letters back into the log, through the route's pipeline:
                                     body {"route": R, "ids": [...]} or {"route": R, "limit": N}, and
                                     "raw": true to move them as they are (ingest/replay.py)

Dead letters are what callers sent: like a replay, listing them needs `authorization: Bearer <admin.token>`, and
is refused (403) when no `admin.token` is configured (meshbatch.security.admin). Summaries show no payload and
go through `scrub` (a sink's error may quote its URL).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs

import orjson

from meshbatch.config.redact import scrub
from meshbatch.errors import BadRequest, NoRoute, ProxyError
from meshbatch.http.message import Request, Response
from meshbatch.security.admin import AdminUnauthorized, check_admin_token

if TYPE_CHECKING:
    from meshbatch.ingest.route import IngestRoute

MAX_LIST = 10_000


Unauthorized = AdminUnauthorized  # the name this module exported before the check moved to security.admin


class IngestAdminTarget(Protocol):
    @property
    def snapshot(self) -> Any: ...


def _json(payload: Any, status: int = 200, extra: list[tuple[bytes, bytes]] | None = None) -> Response:
    body = orjson.dumps(payload, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    return Response(status, [(b"content-type", b"application/json"), *(extra or [])], body)


def _failure(error: ProxyError) -> Response:
    extra = [(b"www-authenticate", b'Bearer realm="meshbatch-admin"')] if error.status == 401 else None
    response = _json(orjson.loads(error.body()), error.status, extra)
    response.reason, response.flag = error.reason, error.flag
    return response


class IngestAdmin:
    def __init__(self, target: IngestAdminTarget) -> None:
        self.target = target

    def routes(self) -> dict[str, IngestRoute]:
        routes: dict[str, IngestRoute] = getattr(self.target.snapshot, "ingest", {})
        return routes

    def _route(self, name: str | None) -> IngestRoute:
        routes = self.routes()
        if name is None:
            if len(routes) == 1:
                return next(iter(routes.values()))
            raise BadRequest("route_required", f"name the ingest route; known: {', '.join(sorted(routes))}")
        route = routes.get(name)
        if route is None:
            raise NoRoute("no_ingest_route", f"no ingest route {name!r}; known: {', '.join(sorted(routes))}")
        return route

    def summary(self, request: Request) -> Response:
        return _json(scrub({"ingest": {name: r.summary() for name, r in self.routes().items()}}))

    async def dead_letters(self, request: Request) -> Response:
        try:
            self._authorize(request)
            query = {k: v[-1] for k, v in parse_qs(request.query.decode("latin-1")).items()}
            limit = min(MAX_LIST, max(1, int(query.get("limit", "100"))))
            route = self._route(query.get("route"))
            letters = await route.dead_letters(limit)
        except ValueError:
            return _failure(BadRequest("bad_limit", "limit is a whole number"))
        except ProxyError as exc:
            return _failure(exc)
        return _json({"route": route.name, "dead_letters": letters})

    async def replay(self, request: Request) -> Response:
        try:
            self._authorize(request)
            payload = orjson.loads(request.body) if request.body.strip() else {}
            if not isinstance(payload, dict):
                raise BadRequest("bad_replay", 'the body is a JSON object: {"route": ..., "ids": [...]}')
            ids = payload.get("ids")
            if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
                raise BadRequest("bad_replay", "ids is a list of event ids")
            limit = payload.get("limit", MAX_LIST)
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
                raise BadRequest("bad_replay", "limit is a whole number >= 1")
            raw = payload.get("raw", False)
            if not isinstance(raw, bool):
                raise BadRequest("bad_replay", "raw is true or false")
            unknown = sorted(set(payload) - {"route", "ids", "limit", "raw"})
            if unknown:
                raise BadRequest("bad_replay", f"unknown key {unknown[0]!r}; the keys are route, ids, limit, raw")
            route = self._route(payload.get("route"))
            report = await route.replay(ids, min(limit, MAX_LIST * 10), raw)
        except orjson.JSONDecodeError:
            return _failure(BadRequest("bad_replay", "the body is not JSON"))
        except ProxyError as exc:
            return _failure(exc)
        return _json({"route": route.name, **report.payload()})

    def _authorize(self, request: Request) -> None:
        admin = self.target.snapshot.config.admin
        check_admin_token(admin.token if admin is not None else None, request)


__all__ = ["IngestAdmin", "Unauthorized"]
