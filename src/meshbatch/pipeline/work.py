"""What moves through a pipeline: one request's body, then the events decoded from it.

Stages before `decode` see the body (bytes); `decode` turns it into `events` (JSON values); later stages
work on events. Events a stage routes to dead letters (e.g. `validate` with `on_invalid: dead_letter`) leave
`events` for `dead`, with the reason.
"""

from __future__ import annotations

from typing import Any

from meshbatch.errors import ProxyError
from meshbatch.http.message import Headers


class InvalidEvent(ProxyError):
    """422: the request is well-formed but an event in it breaks the route's rules (schema, filter)."""

    status, flag, default_reason = 422, "DPE", "invalid_event"


class UnsupportedEncoding(ProxyError):
    """415: a Content-Encoding or Content-Type the route does not take."""

    status, flag, default_reason = 415, "DPE", "unsupported_media_type"


class Work:
    __slots__ = ("body", "dead", "dropped", "events", "failed", "headers", "received")

    def __init__(self, body: bytes, headers: Headers, received: float) -> None:
        self.body = body
        self.headers = headers
        self.received = received  # wall-clock seconds (for `transform.stamp`)
        self.events: list[Any] | None = None
        self.dead: list[tuple[Any, str]] = []
        self.dropped = 0
        self.failed = 0

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def count(self) -> int:
        return 1 if self.events is None else len(self.events)


__all__ = ["InvalidEvent", "UnsupportedEncoding", "Work"]
