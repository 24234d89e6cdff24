"""The codec interface: encode queued items into one upstream body, decode its answer into one result each."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from meshbatch.errors import ProxyError
from meshbatch.http.message import Headers, Response
from meshbatch.registry import Extensions

if TYPE_CHECKING:
    from meshbatch.config.plain import Batch


class ItemRequest:
    """One caller's request as a batch member."""

    __slots__ = ("body", "headers", "id", "method", "path")

    def __init__(self, id: str, body: bytes, method: bytes = b"POST", path: bytes = b"/",
                 headers: Headers | None = None) -> None:
        self.id = id
        self.body = body
        self.method = method
        self.path = path
        self.headers: Headers = headers if headers is not None else []


class ItemResult:
    """One caller's answer. Results are read-only once decoded: several callers may share one (dedup, failures).

    `reason` is set when the proxy itself produced the answer (e.g. `upstream_status_503`), empty when the
    status and body are the upstream's own.
    """

    __slots__ = ("body", "headers", "reason", "status")

    def __init__(self, status: int, body: bytes, headers: Headers | None = None, reason: str = "") -> None:
        self.status = status
        self.body = body
        self.headers: Headers = headers if headers is not None else []
        self.reason = reason

    def __repr__(self) -> str:
        return f"<ItemResult {self.status} {self.reason or len(self.body)}>"


class Refusal(str):
    """A `check_item` answer that names its own stable reason; a plain str is refused as `invalid_body`."""

    __slots__ = ("reason",)
    reason: str

    def __new__(cls, text: str, reason: str) -> Refusal:
        refusal = super().__new__(cls, text)
        refusal.reason = reason
        return refusal


def refusal_reason(problem: str) -> str:
    """The reason an item refused by `check_item` is answered with (400)."""
    return problem.reason if isinstance(problem, Refusal) else "invalid_body"


class Replies(Protocol):
    """How the callers of a codec's routes are answered: plain HTTP (a status, headers and body; the proxy's own
    errors as JSON) or gRPC (a unary answer, or a status in a trailers-only answer)."""

    def answer(self, result: ItemResult, trailing: Headers) -> Response:
        """A caller's answer from its result, with `trailing` (the batch's headers) after the result's own."""
        ...

    def refuse(self, error: ProxyError, extra: Headers | None = None) -> Response:
        """An error the proxy answers itself, with `extra` fields."""
        ...

    def upstream(self, response: Response) -> Response:
        """The upstream's batch answer as the batching core reads it: its status is the one that decides
        retries and isolation (a gRPC answer's is its grpc-status', as an HTTP status)."""
        ...


class Codec(Protocol):
    name: str
    content_type: bytes
    # True when `encode` uses each item's method, path and headers (the envelope shape); the batcher then
    # fills `ItemRequest.headers` with the caller's end-to-end headers, otherwise leaves them empty.
    forwards_headers: bool

    @property
    def request_headers(self) -> Headers:
        """Fields sent with every batch besides the content type (gRPC's `te: trailers`)."""
        ...

    @property
    def replies(self) -> Replies:
        """How the callers of the codec's routes are answered."""
        ...

    def call_headers(self, timeout: float) -> Headers:
        """Fields of one batch call that depend on its time budget in seconds (gRPC's `grpc-timeout`)."""
        ...

    def check_item(self, item: ItemRequest) -> str | None:
        """None if the item can be batched with this codec, else why it cannot (answered 400 with the detail;
        the reason is `invalid_body`, or the one a `Refusal` names). Every codec reads a body that is JSON as
        JSON whatever its content type; a codec that forwards headers may relabel the item's own list."""
        ...

    def encode(self, items: Sequence[ItemRequest]) -> bytes: ...

    def decode(self, status: int, headers: Headers, body: bytes, items: Sequence[ItemRequest]) -> list[ItemResult]:
        """One result per item, in the order of `items`; never raises for a bad upstream answer. `headers` are
        the answer's header fields followed by its trailers (where gRPC puts its status)."""
        ...


# A codec by name, built for a route's `batch:` block (None: its defaults, as an ingest sink uses it).
CodecFactory = Callable[["Batch | None"], Codec]
CODECS: Extensions[CodecFactory] = Extensions("codec")

__all__ = ["CODECS", "Codec", "CodecFactory", "ItemRequest", "ItemResult", "Refusal", "Replies", "refusal_reason"]
