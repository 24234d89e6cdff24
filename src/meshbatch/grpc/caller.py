"""What a gRPC caller of a plain (proxied) route gets back: every answer made readable as a gRPC status.

A gRPC client reads grpc-status, never the HTTP status: an HTTP 503 with a JSON body is, to it, a broken stream.
So the answer to a gRPC request (HTTP/2, content-type `application/grpc` or `application/grpc+...`) goes through
`for_caller` on its way out (http2/sending.py calls it for every answer, those made before a route matched
included):

- the proxy's own answer (a local reply: it has a `reason`) becomes a trailers-only answer with the status
  `mapping.for_reason` gives (no route UNIMPLEMENTED, no healthy endpoint UNAVAILABLE, a full queue or a rate
  limit RESOURCE_EXHAUSTED with grpc-retry-pushback-ms, a deadline DEADLINE_EXCEEDED, denied PERMISSION_DENIED,
  ...), grpc-message `reason: detail`;
- an upstream's plain HTTP answer (no grpc-status anywhere, not a 200 `application/grpc`) becomes a trailers-only
  answer as the gRPC spec's doc/http-grpc-status-mapping.txt maps its HTTP status (a 200 of another content type
  is UNKNOWN);
- an upstream's gRPC answer goes through, with two repairs a client cannot do itself: an answer that ends
  without grpc-status gets trailers with INTERNAL, a grpc-status that is not a code is UNKNOWN, and a
  grpc-message longer than `MAX_FORWARDED_MESSAGE` bytes is cut (gRPC clients refuse header blocks past 8 KiB,
  and would lose the status with it). A streamed answer (larger than the listener's buffer limit) gets the same
  repairs at its end, from `streamed_trailers` (http2/streams.py), as its trailers go out after its body.

An answer that is already gRPC (the batching codecs' own, grpc/replies.py) is left as it is.
"""

from __future__ import annotations

import orjson

from meshbatch.grpc import mapping
from meshbatch.grpc.replies import MESSAGE, PUSHBACK, STATUS, trailers_only
from meshbatch.grpc.status import GrpcStatus
from meshbatch.http.message import Headers, Request, Response

MAX_FORWARDED_MESSAGE = 4096  # bytes of an upstream's grpc-message passed on (percent-encoded form)
_GRPC = b"application/grpc"
_WEB = b"application/grpc-web"
_CONTENT_TYPE = b"content-type"
_HIGHEST_STATUS = max(GrpcStatus)  # (16: UNAUTHENTICATED; an enum's max walks its members, so once)


def is_grpc(request: Request) -> bool:
    """A gRPC call: HTTP/2 (gRPC runs on nothing else) with content-type application/grpc[+codec] (not gRPC-Web,
    whose clients read their status from the body)."""
    if request.version != b"2":
        return False
    kind = request.header(_CONTENT_TYPE)
    return kind is not None and kind.startswith(_GRPC) and not kind.startswith(_WEB)


def _content_type(headers: Headers) -> bytes:
    for name, value in headers:
        if name == _CONTENT_TYPE:
            return value
    return b""


def for_caller(response: Response) -> Response:
    """The answer a gRPC caller is given for `response` (see the module docstring)."""
    headers = response.headers
    if response.status == 200 and _content_type(headers).startswith(_GRPC):
        return _checked(response)
    if response.reason:
        return _local(response)
    return _from_http(response)


def _local(response: Response) -> Response:
    """A local reply (http/serialize.py local_reply: a JSON body with its reason and detail) as a status."""
    code = mapping.for_reason(response.reason, response.status)
    message = response.reason
    try:
        payload = orjson.loads(response.body) if response.body else None
    except orjson.JSONDecodeError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("detail"), str):
        message = f"{response.reason}: {payload['detail']}"
    extra: Headers = []
    for name, value in response.headers:
        if name == b"retry-after" and value.isdigit():  # a full queue, a rate limit: when to try again
            extra.append((PUSHBACK, str(int(value) * 1000).encode()))
        elif name in (b"via", b"x-meshbatch-attempts"):
            extra.append((name, value))
    return _replace(response, trailers_only(code, message, extra))


def _from_http(response: Response) -> Response:
    """An upstream's plain HTTP answer, as the gRPC spec maps its status."""
    status = response.status
    code = mapping.from_http(status)
    kind = _content_type(response.headers)
    message = f"upstream answered HTTP {status}" + (f" ({kind.decode('latin-1')[:64]})" if kind else "")
    if response.stream is not None:
        response.stream.abandon()  # its body is not for this caller: the upstream connection is dropped
    extra = [(name, value) for name, value in response.headers if name in (b"via", b"x-meshbatch-attempts")]
    return _replace(response, trailers_only(code, message, extra))


def _replace(old: Response, new: Response) -> Response:
    new.flag = old.flag
    new.reason = old.reason
    new.upstream = old.upstream
    return new


def _checked(response: Response) -> Response:
    """An upstream's gRPC answer, its status made readable (see the module docstring)."""
    found = _repair(response.headers)
    if response.trailers is not None:
        found = _repair(response.trailers) or found
    if not found and response.stream is None:
        trailers = response.trailers if response.trailers is not None else []
        trailers.extend(((STATUS, b"13"), (MESSAGE, b"upstream answer ended without grpc-status")))
        response.trailers = trailers
    return response


def streamed_trailers(trailers: Headers | None) -> Headers:
    """The trailers a streamed gRPC answer ends with: the upstream's, repaired, or INTERNAL when it sent no
    grpc-status (its head had none either: a head with one ends the answer, which is then never streamed)."""
    block = list(trailers) if trailers else []
    if not _repair(block):
        block.extend(((STATUS, b"13"), (MESSAGE, b"upstream answer ended without grpc-status")))
    return block


def _repair(block: Headers) -> bool:
    """Fix grpc-status and grpc-message of one header block in place; True when it has a grpc-status."""
    found = False
    for i, (name, value) in enumerate(block):
        if name == STATUS:
            found = True
            if not (value.isdigit() and len(value) <= 2 and int(value) <= _HIGHEST_STATUS):
                block[i] = (STATUS, b"2")  # UNKNOWN, as a client reads a status it does not know
        elif name == MESSAGE and len(value) > MAX_FORWARDED_MESSAGE:
            cut = value[:MAX_FORWARDED_MESSAGE]
            escape = cut.rfind(b"%", -2)
            if escape >= 0:  # never half a %XX escape
                cut = cut[:escape]
            block[i] = (MESSAGE, cut + b"...")
    return found


__all__ = ["MAX_FORWARDED_MESSAGE", "for_caller", "is_grpc", "streamed_trailers"]
