"""The plain HTTP way of answering a batch route's callers: each gets its result's status, headers and body;
the proxy's own errors are JSON (batching/replies.py)."""

from __future__ import annotations

from meshbatch.batching.codecs.base import ItemResult
from meshbatch.batching.replies import error_response
from meshbatch.errors import ProxyError
from meshbatch.http.message import Headers, Response

NO_HEADERS: Headers = []  # shared, never mutated


class HttpReplies:
    __slots__ = ()

    def answer(self, result: ItemResult, trailing: Headers) -> Response:
        response = Response(result.status, [*result.headers, *trailing], result.body)
        if result.reason:
            response.reason = result.reason
            response.flag = "UPE"
        return response

    def refuse(self, error: ProxyError, extra: Headers | None = None) -> Response:
        return error_response(error, extra)

    def upstream(self, response: Response) -> Response:
        return response


HTTP_REPLIES = HttpReplies()

__all__ = ["HTTP_REPLIES", "NO_HEADERS", "HttpReplies"]
