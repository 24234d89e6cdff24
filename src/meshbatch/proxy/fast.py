"""The fast path of plain forwarding: one exchange over an idle keep-alive connection, driven by callbacks.

The general path runs a route's handler as a coroutine in its own task. For the commonest case, a plain route
whose endpoint has an idle connection, that costs a task, a future and five coroutine frames per request, a
quarter of the proxy's own time. `Forwarder.start` does the same exchange with callbacks and returns an
`Exchange`, or None when the general path must run (no endpoint, no idle connection: connecting, waiting for
a slot and their errors live there only). Outcomes are identical: same headers, same errors, same accounting.

The outcome arrives once the upstream connection has read the whole chunk that completed the answer (never
inside a parser callback), so handing the connection back here sees the final reuse decision. An answer
larger than the listener's buffer limit arrives with its body as a stream: its connection goes back to the
pool when that stream is over.
"""

from __future__ import annotations

from collections.abc import Callable
from time import monotonic

from meshbatch.errors import ProxyError, UpstreamReset
from meshbatch.http.client import UpstreamConnection
from meshbatch.http.message import Request, Response
from meshbatch.http.pool import IDEMPOTENT
from meshbatch.http.serialize import encode_request, local_reply
from meshbatch.upstream.cluster import Cluster
from meshbatch.upstream.endpoint import Endpoint

# Called once with the answer, or with None: "replay this request on the general path".
Respond = Callable[[Response | None], None]


class Exchange:
    """One request in flight on the fast path; has the shape of a future for `UpstreamConnection.start`."""

    __slots__ = ("_done", "cluster", "conn", "endpoint", "method", "respond", "started", "via")

    def __init__(self, cluster: Cluster, endpoint: Endpoint, conn: UpstreamConnection, method: bytes,
                 respond: Respond, via: bool) -> None:
        self.started = 0.0
        self.cluster = cluster
        self.endpoint = endpoint
        self.conn = conn
        self.method = method
        self.respond = respond
        self.via = via
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_result(self, response: Response, /) -> None:
        self._done = True
        endpoint = self.endpoint
        endpoint.active -= 1
        stream = response.stream
        if stream is None:
            endpoint.pool.release(self.conn)
        else:
            stream.when_closed(self._release)
        endpoint.observe(response.status, self.started, monotonic())  # load estimate, passive health
        response.upstream = endpoint.address
        if self.via:
            response.headers.append((b"via", b"1.1 meshbatch"))
        self.respond(response)

    def set_exception(self, error: BaseException, /) -> None:
        self._done = True
        endpoint = self.endpoint
        endpoint.active -= 1
        endpoint.pool.discard(self.conn)
        if isinstance(error, UpstreamReset) and self.conn.uses > 1 and self.method in IDEMPOTENT:
            self.respond(None)  # a reused connection died under us: the general path replays it
            return
        if not isinstance(error, ProxyError):
            error = ProxyError("internal_error", str(error))
        self.cluster.failed(endpoint, error, self.started)
        self.respond(local_reply(error))

    def _release(self) -> None:
        self.endpoint.pool.release(self.conn)

    def cancel(self) -> None:
        """The caller went away: drop the connection mid-exchange."""
        if not self._done:
            self._done = True
            self.endpoint.active -= 1
            self.conn.abandon()
            self.endpoint.pool.discard(self.conn)


def start(cluster: Cluster, request: Request, headers: list[tuple[bytes, bytes]], deadline: float, via: bool,
          respond: Respond, stream_limit: int = 0) -> Exchange | None:
    hash_header = cluster.hash_header
    endpoint = cluster.balancer.pick(None if hash_header is None else request.header(hash_header))
    if endpoint is None:
        return None
    conn = endpoint.pool.take_idle()
    if conn is None:
        # The general path connects to this endpoint: picking again would skip one (round robin).
        request.context["endpoint"] = endpoint
        return None
    exchange = Exchange(cluster, endpoint, conn, request.method, respond, via)
    endpoint.active += 1
    endpoint.requests += 1
    exchange.started = monotonic()
    conn.start(encode_request(request.method, request.target, headers, request.body), request.method == b"HEAD",
               deadline, exchange, stream_limit)
    return exchange


__all__ = ["Exchange", "Respond", "start"]
