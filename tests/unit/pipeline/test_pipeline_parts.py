"""A request the pipeline splits into several events (NDJSON on a batching route) is still its caller's: each part
carries the caller's identity and token principal, so the batcher scopes its idempotency key to the caller and
not to the client address the parts would otherwise fall back to."""

from __future__ import annotations

from meshbatch.config.model import Step
from meshbatch.http.message import Request, Response
from meshbatch.pipeline import build_pipeline
from meshbatch.pipeline.handler import PipelineLayer
from meshbatch.security.identity import caller_principal
from meshbatch.service import Call
from meshbatch.upstream.exchange import Attempt


async def test_the_parts_of_a_split_request_are_the_callers() -> None:
    seen: list[str] = []

    async def batcher(part: Call) -> Response:
        seen.append(caller_principal(part.request, part.principal))
        part.attempt = Attempt()  # a part's own state stays its own
        return Response(200, [], b"{}")

    pipeline = build_pipeline("r", [Step.model_validate({"decode": {"format": "ndjson"}})], dead_letters=False)
    request = Request(b"POST", b"/orders", [(b"idempotency-key", b"k")], b'{"a": 1}\n{"a": 2}\n', client="10.0.0.1")
    request.identity = "spiffe://example.org/ns/shop/sa/alice"
    call = Call(request)
    call.principal = "https://issuer.example/alice"
    answer = await PipelineLayer(pipeline, batcher)(call)
    assert answer.status == 200
    assert seen == [caller_principal(request, call.principal)] * 2
    assert "spiffe://example.org/ns/shop/sa/alice" in seen[0] and call.attempt is None


async def test_the_parts_of_a_keyed_request_get_keys_of_their_own() -> None:
    """One key on a request of three events: the items are `K:0`, `K:1`, `K:2`, so they never share one upstream
    item (nor meet `idempotency_key_reused` for their different bodies), and a retry of the request matches each."""
    keys: list[bytes | None] = []

    async def batcher(part: Call) -> Response:
        keys.append(part.request.header(b"idempotency-key"))
        return Response(200, [], b"{}")

    pipeline = build_pipeline("r", [Step.model_validate({"decode": {"format": "ndjson"}})], dead_letters=False)
    headers = [(b"content-type", b"application/x-ndjson"), (b"idempotency-key", b"order-7")]
    request = Request(b"POST", b"/orders", headers, b'{"a": 1}\n{"a": 2}\n{"a": 3}\n')
    assert (await PipelineLayer(pipeline, batcher)(Call(request))).status == 200
    assert keys == [b"order-7:0", b"order-7:1", b"order-7:2"]
    assert request.header(b"idempotency-key") == b"order-7"  # the caller's own request is left as it was
