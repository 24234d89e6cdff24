"""Results the proxy makes itself when an upstream batch answer cannot be split: one JSON reason per caller."""

from __future__ import annotations

from http import HTTPStatus

import orjson

from meshbatch.batching.codecs.base import ItemResult
from meshbatch.http.message import Headers

JSON_HEADERS: Headers = [(b"content-type", b"application/json")]


def failure(reason: str, detail: str = "", status: int = 502, upstream_status: int | None = None,
            extra_headers: Headers | None = None) -> ItemResult:
    """A proxy-made error result with the JSON body `{"error", "reason", ["detail"], ["upstream_status"]}`."""
    payload: dict[str, object] = {"error": HTTPStatus(status).phrase.lower(), "reason": reason}
    if detail:
        payload["detail"] = detail
    if upstream_status is not None:
        payload["upstream_status"] = upstream_status
    headers = JSON_HEADERS if not extra_headers else [*JSON_HEADERS, *extra_headers]
    return ItemResult(status, orjson.dumps(payload), headers, reason)


def upstream_status(status: int, headers: Headers) -> ItemResult:
    """The answer for every caller of a batch the upstream refused as a whole (a non-2xx batch answer)."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "non-standard status"
    retry = [(name, value) for name, value in headers if name == b"retry-after"]
    return failure(f"upstream_status_{status}", f"the upstream answered the batch with {status} {phrase}",
                   upstream_status=status, extra_headers=retry)


def naming_target(results: list[ItemResult], status: int, method: bytes, path: bytes) -> list[ItemResult]:
    """`results` with each `upstream_status_<status>` refusal's detail naming the call that was refused (a 404:
    the upstream has no such path, most often a `batch.upstream_path` left to its default `/batch`)."""
    reason = f"upstream_status_{status}"
    if not any(result.reason == reason for result in results):
        return results
    target = f"{method.decode('latin-1')} {path.decode('latin-1')}"
    detail = f"the upstream answered the batch call {target} with {status}"
    if status == 404:
        detail += " Not Found: the upstream has no such path (set the route's batch.upstream_path; default /batch)"
    named: dict[int, ItemResult] = {}
    out = []
    for result in results:
        if result.reason != reason:
            out.append(result)
            continue
        if id(result) not in named:
            retry = [(name, value) for name, value in result.headers if name == b"retry-after"]
            named[id(result)] = failure(reason, detail, upstream_status=status, extra_headers=retry)
        out.append(named[id(result)])
    return out


def for_all(result: ItemResult, n: int) -> list[ItemResult]:
    return [result] * n


def json_error(exc: Exception) -> str:
    """A short, single-line description of a JSON parse error."""
    return str(exc).split("\n", 1)[0][:200]


__all__ = ["JSON_HEADERS", "failure", "for_all", "json_error", "naming_target", "upstream_status"]
