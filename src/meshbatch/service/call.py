"""`Call`: one request and what its stack learns about it on the way, typed, one object per request.

The request itself (http/message.py) holds what came in on the wire and from the connection: method, target,
headers, body, the trusted client address, the peer's verified SPIFFE ID. Everything a layer decides or finds out
about the request lives here, in named fields, for the layers below it to read:

- `principal`, `claims`: who a validated JWT says the caller is (layers/authn.py);
- `deadline`: when the answer is due, fixed once (layers/timeout.py), in loop time; `grpc_timeout`: the caller
  sent `grpc-timeout`, so each attempt sends the time left upstream;
- `target`, `attempt`: where the request goes (a weighted split chooses once) and its attempts so far (retries);
- `endpoint`: an endpoint the fast path picked but could not send to (no idle connection): the general path sends
  to the same one, so a round-robin balancer skips nobody;
- `upstream_headers`: the headers sent upstream, built once for all of a request's attempts;
- `span`: the request's tracing span, when tracing is on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from meshbatch.http.message import Headers, Request

if TYPE_CHECKING:
    from meshbatch.upstream.endpoint import Endpoint
    from meshbatch.upstream.exchange import Attempt
    from meshbatch.upstream.target import Target


class Call:
    __slots__ = ("attempt", "claims", "deadline", "endpoint", "grpc_timeout", "principal", "request", "span",
                 "target", "upstream_headers")

    def __init__(self, request: Request) -> None:
        self.request = request
        self.principal: str | None = None
        self.claims: dict[str, Any] | None = None
        self.deadline: float | None = None
        self.grpc_timeout = False
        self.target: Target | None = None
        self.attempt: Attempt | None = None
        self.endpoint: Endpoint | None = None
        self.upstream_headers: Headers | None = None
        self.span: Any = None

    def part(self, request: Request) -> Call:
        """A call for one part of this request (the pipeline splits an NDJSON body into items): the same caller
        (identity, token, deadline), state of its own."""
        part = Call(request)
        part.principal = self.principal
        part.claims = self.claims
        part.deadline = self.deadline
        part.grpc_timeout = self.grpc_timeout
        part.span = self.span
        return part

    def __repr__(self) -> str:
        return f"<Call {self.request!r} route={self.request.route or '-'}>"


__all__ = ["Call"]
