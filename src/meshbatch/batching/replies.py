"""Answers the batcher makes itself: a ProxyError as a Response with its JSON body, flag and reason."""

from __future__ import annotations

import math

from meshbatch.errors import Overloaded, ProxyError
from meshbatch.http.message import Headers, Response

JSON_TYPE = (b"content-type", b"application/json")


def error_response(error: ProxyError, extra: Headers | None = None) -> Response:
    headers: Headers = [JSON_TYPE]
    if isinstance(error, Overloaded):
        headers.append((b"retry-after", str(max(1, math.ceil(error.retry_after))).encode()))
    if extra:
        headers.extend(extra)
    response = Response(error.status, headers, error.body())
    response.flag = error.flag
    response.reason = error.reason
    return response


__all__ = ["error_response"]
