"""Header fields the proxy itself decides on: which may appear only once, and which Connection may not remove.

Singletons. When a header the proxy acts on arrives twice, the proxy reads one value (the first) while the
upstream may read the other, or both joined: two `Authorization` headers let a validated token stand in front
of an unvalidated one. A request carrying any of these more than once is refused (400 `duplicate_header`).
They are the fields that are not lists by definition (RFC 9110 5.3: a field may be repeated only if its value
is a comma-separated list) and that the proxy reads or relies on:

| field | the proxy uses it for |
| --- | --- |
| `authorization`, `proxy-authorization` | JWT validation, policies; credentials are one value |
| `content-type`, `content-encoding`, `content-length`, `transfer-encoding` | framing, preprocessing, batch codecs |
| `expect` | 100-continue |
| `idempotency-key` | batch dedup, replay and ingest (keys are one value) |
| `x-request-id` | the request id in logs, the upstream and the answer |
| `traceparent` | the parent span (W3C trace context allows one) |
| `x-forwarded-proto` | the scheme the upstream is told (with trusted hops) |
| `x-meshbatch-*` | priority, deadline, fault injection: the proxy's own controls |

`Host` has its own check and reason (`duplicate_host`). List-valued fields (`x-forwarded-for`, `forwarded`,
`via`, `tracestate`, `accept`, ...) may repeat: their values concatenate.

Nominations. `Connection: x-foo` makes `x-foo` hop-by-hop (RFC 9110 7.6.1): the recipient removes it. A client
(or an upstream) could thereby remove what the proxy reads or adds after checking it, so a nomination never
removes `Host`, the `content-*` and framing fields, the forwarding and tracing fields the proxy sets, or the
proxy's own `x-meshbatch-*` controls: such a nomination is ignored (nginx ignores all of them; Envoy refuses a
request nominating `x-forwarded-*`). Any other nominated field is removed, both ways.
"""

from __future__ import annotations

SINGLETONS = frozenset({
    b"authorization",
    b"proxy-authorization",
    b"content-type",
    b"content-encoding",
    b"content-length",
    b"transfer-encoding",
    b"expect",
    b"idempotency-key",
    b"x-request-id",
    b"traceparent",
    b"x-forwarded-proto",
})
OWN_PREFIX = b"x-meshbatch-"  # the proxy's own request controls and answer headers

PROTECTED = frozenset({
    b"host",
    b"transfer-encoding",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"forwarded",
    b"via",
    b"x-request-id",
    b"traceparent",
    b"tracestate",
})


# Connection values that nominate no field (the common ones, as sent): nothing to look up.
PLAIN_CONNECTION = frozenset({b"keep-alive", b"close", b"Keep-Alive", b"Close", b"upgrade", b"Upgrade"})


def protected(name: bytes) -> bool:
    """A field a Connection nomination may not remove."""
    return name in PROTECTED or name.startswith(b"content-") or name.startswith(OWN_PREFIX)


def single(name: bytes) -> bool:
    """A field refused when it arrives more than once."""
    return name in SINGLETONS or name.startswith(OWN_PREFIX)


__all__ = ["OWN_PREFIX", "PLAIN_CONNECTION", "PROTECTED", "SINGLETONS", "protected", "single"]
