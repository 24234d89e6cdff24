"""A request the pipeline splits into several events (NDJSON on a batching route) is still its caller's: each part
carries the caller's identity and token principal, so the batcher scopes its idempotency key to the caller and
not to the client address the parts would otherwise fall back to."""

from __future__ import annotations

from meshbatch.config.model import Step
from meshbatch.http.message import Request, Response
from meshbatch.pipeline import build_pipeline
from meshbatch.pipeline.handler import PipelineHandler
from meshbatch.security.identity import IDENTITY, REQUEST_PRINCIPAL, caller_principal


async def test_the_parts_of_a_split_request_are_the_callers() -> None:
    seen: list[str] = []

    async def batcher(part: Request) -> Response:
        seen.append(caller_principal(part))
        part.context["attempt"] = len(seen)  # a part's own state stays its own
        return Response(200, [], b"{}")

    pipeline = build_pipeline("r", [Step.model_validate({"decode": {"format": "ndjson"}})], dead_letters=False)
    request = Request(b"POST", b"/orders", [(b"idempotency-key", b"k")], b'{"a": 1}\n{"a": 2}\n', client="10.0.0.1")
    request.context[IDENTITY] = "spiffe://example.org/ns/shop/sa/alice"
    request.context[REQUEST_PRINCIPAL] = "https://issuer.example/alice"
    answer = await PipelineHandler(pipeline, batcher)(request)
    assert answer.status == 200
    assert seen == [caller_principal(request)] * 2
    assert "spiffe://example.org/ns/shop/sa/alice" in seen[0] and "attempt" not in request.context


async def test_the_parts_of_a_keyed_request_get_keys_of_their_own() -> None:
    """One key on a request of three events: the items are `K:0`, `K:1`, `K:2`, so they never share one upstream
    item (nor meet `idempotency_key_reused` for their different bodies), and a retry of the request matches each."""
    keys: list[bytes | None] = []

    async def batcher(part: Request) -> Response:
        keys.append(part.header(b"idempotency-key"))
        return Response(200, [], b"{}")

    pipeline = build_pipeline("r", [Step.model_validate({"decode": {"format": "ndjson"}})], dead_letters=False)
    headers = [(b"content-type", b"application/x-ndjson"), (b"idempotency-key", b"order-7")]
    request = Request(b"POST", b"/orders", headers, b'{"a": 1}\n{"a": 2}\n{"a": 3}\n')
    assert (await PipelineHandler(pipeline, batcher)(request)).status == 200
    assert keys == [b"order-7:0", b"order-7:1", b"order-7:2"]
    assert request.header(b"idempotency-key") == b"order-7"  # the caller's own request is left as it was
