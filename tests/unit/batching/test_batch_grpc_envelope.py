"""gRPC unary calls batched in meshbatch's envelope, through the batcher: what the upstream receives, what each
caller gets back (a unary answer, or its own status), and every failure as a gRPC status."""

import asyncio
import sys
from pathlib import Path

import pytest
from batching_support import make_handler, settle, submit

from meshbatch.grpc import envelope
from meshbatch.grpc.framing import frame, unary
from testbed.grpc_batch import Answer, grpc_answer, grpc_call, trailers_only

sys.path.insert(0, str(Path(__file__).parents[1] / "layers"))  # layers_support: a cluster and its target
ENVELOPE = b"/meshbatch.batch.v1.Batch/Process"


def answer_with(call, results):
    call.future.set_result(grpc_answer(envelope.encode_response(results)))


def sent_items(call):
    return envelope.decode_request(unary(call.body))


async def test_round_trip_each_caller_gets_its_result_or_its_status():
    handler, upstream, clock = make_handler(codec="grpc", key=["header:x-tenant"])
    tasks = [submit(handler, grpc_call(b"sku-%d" % n, [(b"x-tenant", b"acme"), (b"x-trace", b"t%d" % n),
                                                          (b"grpc-timeout", b"2S"), (b"idempotency-key", b"")]))
             for n in range(3)]
    await settle()
    (call,) = upstream.calls
    assert call.method == b"POST" and call.path == ENVELOPE and call.key == (b"acme",)
    assert (b"content-type", b"application/grpc") in call.headers and (b"te", b"trailers") in call.headers
    assert (b"grpc-timeout", b"2000000u") in call.headers  # the callers' latest deadline, as gRPC says it
    items = sent_items(call)
    assert [i.payload for i in items] == [b"sku-0", b"sku-1", b"sku-2"]
    assert [i.id for i in items] == ["1", "2", "3"] and {i.method for i in items} == {"/inventory.Inventory/Get"}
    assert dict(items[1].metadata) == {"x-tenant": "acme", "x-trace": "t1", "idempotency-key": ""}
    clock.advance(0.002)
    answer_with(call, [envelope.EnvelopeResult(payload=b"stock-0", metadata=[("x-cache", "hit")]),
                       envelope.EnvelopeResult(code=5, message="no such sku: 1%"),
                       envelope.EnvelopeResult(payload=b"")])
    first, second, third = [Answer(r) for r in await asyncio.gather(*tasks)]
    assert (first.status, first.message, first.headers[b"x-cache"]) == (0, b"stock-0", b"hit")
    assert first.trailers[b"x-meshbatch-batch-size"] == b"3" and first.trailers[b"x-meshbatch-flush"] == b"wait"
    assert first.trailers[b"x-meshbatch-queue-ms"] == b"0.000" and b"x-meshbatch-batch-id" in first.trailers
    assert (second.status, second.text, second.message) == (5, "no such sku: 1%", None)
    assert second.metadata[b"x-meshbatch-batch-size"] == b"3"  # trailers-only: the batch headers are in it
    assert (third.status, third.message) == (0, b"")


@pytest.mark.parametrize(("reply", "status", "words"), [
    (trailers_only(14, b"overloaded"), 14, "overloaded"),
    (grpc_answer(b"", 3, b"bad%20batch"), 3, "bad batch"),
    (grpc_answer(b"\x0a\x02\x08\x00"), 13, "the batch had 2 items and the answer 1 results"),
    (grpc_answer(b"\x0a\x09abc"), 13, "not a BatchResponse"),
    (grpc_answer(b"\x0a\x02\x0a\x01x"), 13, "not a BatchResponse"),  # a Result whose code is bytes
    (grpc_answer(b"\x0b"), 13, "group"),
])
async def test_a_batch_answer_that_fails_every_caller(reply, status, words):
    handler, upstream, _clock = make_handler(codec="grpc", isolate="off")
    tasks = [submit(handler, grpc_call(b"a")), submit(handler, grpc_call(b"b"))]
    await settle()
    upstream.calls[0].future.set_result(reply)
    for response in await asyncio.gather(*tasks):
        found = Answer(response)
        assert found.status == status and words in found.text


async def test_answers_that_are_not_grpc():
    handler, upstream, _clock = make_handler(codec="grpc")
    tasks = [submit(handler, grpc_call(b"a")) for _ in range(3)]
    await settle()
    from meshbatch.http.message import Response
    upstream.calls[0].future.set_result(Response(503, [(b"content-type", b"text/plain")], b"busy"))
    found = Answer(await tasks[0])
    assert found.status == 14 and "upstream_status_503" in found.text  # the gRPC spec: 503 is UNAVAILABLE
    handler2, upstream2, _ = make_handler(codec="grpc")
    task = submit(handler2, grpc_call(b"a"))
    await settle()
    upstream2.calls[0].future.set_result(Response(200, [(b"content-type", b"application/grpc")], frame(b"")))
    found = Answer(await task)
    assert found.status == 13 and "no grpc-status" in found.text
    assert found.response.reason == "upstream_not_grpc" and found.response.flag == "UPE"


async def test_result_codes_and_metadata_an_upstream_may_not_give():
    handler, upstream, _clock = make_handler(codec="grpc")
    tasks = [submit(handler, grpc_call(b"%d" % n)) for n in range(6)]
    await settle()
    answer_with(upstream.calls[0], [
        envelope.EnvelopeResult(code=99, message="odd"),
        envelope.EnvelopeResult(code=-1),
        envelope.EnvelopeResult(code=5, metadata=[("grpc-status", "0"), ("x-meshbatch-batch-size", "1"),
                                                  ("content-type", "text/html"), ("x-kept", "yes")]),
        envelope.EnvelopeResult(payload=b"x", metadata=[("x-evil", "a\r\nset-cookie: 1")]),
        envelope.EnvelopeResult(payload=b"x", metadata=[("Upper", "1")]),
        envelope.EnvelopeResult(payload=b"x", metadata=[("x-utf8", "caf\u00e9")]),
    ])
    found = [Answer(r) for r in await asyncio.gather(*tasks)]
    assert (found[0].status, found[0].text) == (2, "status code 99: odd")
    assert found[1].status == 2
    assert found[2].status == 5 and found[2].metadata[b"x-kept"] == b"yes"  # reserved keys dropped
    assert found[2].metadata[b"x-meshbatch-batch-size"] == b"6"
    assert found[2].response.headers.count((b"content-type", b"application/grpc")) == 1
    assert b"text/html" not in dict(found[2].response.headers).values()
    assert found[3].status == 13 and "outside printable ASCII" in found[3].text
    assert found[4].status == 13 and "not a gRPC metadata key" in found[4].text
    assert found[5].status == 13 and "outside printable ASCII" in found[5].text


@pytest.mark.parametrize(("raw", "headers", "status", "reason"), [
    (b"not framed", [], 13, "grpc_bad_message"),
    (frame(b"a") + frame(b"b"), [], 13, "grpc_bad_message"),
    (frame(b"x" * 2000), [], 8, "grpc_message_too_large"),
    (frame(b"x", compressed=True), [(b"grpc-encoding", b"snappy")], 12, "grpc_encoding_unsupported"),
    (frame(b"x"), [(b"grpc-timeout", b"soon")], 13, "bad_deadline"),
    (frame(b"x"), [(b"grpc-timeout", b"0n")], 4, "deadline_exceeded"),
    (frame(b"x"), [(b"x-meshbatch-priority", b"urgent")], 13, "bad_priority"),
])
async def test_callers_refused_at_the_door(raw, headers, status, reason):
    handler, upstream, _clock = make_handler(codec="grpc", grpc={"max_message_bytes": 1000})
    response = await handler(grpc_call(b"", headers, raw=raw))
    found = Answer(response)
    assert found.status == status and response.reason == reason and found.message is None
    assert not upstream.calls


async def test_a_caller_that_is_not_grpc_is_refused():
    handler, _upstream, _clock = make_handler(codec="grpc")
    call = grpc_call(b"x")
    call.request.headers = [(b"content-type", b"application/json")]
    found = Answer(await handler(call))
    assert found.status == 13 and "application/grpc" in found.text


async def test_grpc_timeout_is_the_callers_deadline():
    handler, upstream, clock = make_handler(codec="grpc", timeout=5.0)
    tasks = [submit(handler, grpc_call(b"a", [(b"grpc-timeout", b"100m")], received_at=clock.now())),
             submit(handler, grpc_call(b"b", [(b"grpc-timeout", b"3S"), (b"x-meshbatch-deadline-ms", b"50")],
                                       received_at=clock.now()))]
    await settle()
    assert upstream.calls[0].timeout == pytest.approx(0.1)
    assert (b"grpc-timeout", b"100000u") in upstream.calls[0].headers
    clock.advance(0.2)
    handler.dispatcher.pump()
    await settle()
    for response in await asyncio.gather(*tasks):
        found = Answer(response)
        assert found.status == 4 and response.reason in ("upstream_timeout", "deadline_exceeded")


async def test_a_full_queue_is_resource_exhausted_with_pushback():
    handler, _upstream, _clock = make_handler(codec="grpc", max_queue=1, max_in_flight=1)
    submit(handler, grpc_call(b"a"))
    await settle()  # in flight
    submit(handler, grpc_call(b"b"))
    await settle()  # queued
    response = await handler(grpc_call(b"c"))
    found = Answer(response)
    assert found.status == 8 and response.reason == "queue_full" and b"grpc-retry-pushback-ms" in found.headers


async def test_identical_idempotency_keys_share_one_item():
    handler, upstream, _clock = make_handler(codec="grpc")
    tasks = [submit(handler, grpc_call(b"same", [(b"idempotency-key", b"k1")])) for _ in range(2)]
    await settle()
    assert len(sent_items(upstream.calls[0])) == 1
    answer_with(upstream.calls[0], [envelope.EnvelopeResult(payload=b"once")])
    assert [Answer(r).message for r in await asyncio.gather(*tasks)] == [b"once", b"once"]


async def test_a_batch_refused_with_invalid_argument_is_split_to_the_caller_at_fault():
    handler, upstream, _clock = make_handler(codec="grpc", max_in_flight=1)
    tasks = [submit(handler, grpc_call(b"good")), submit(handler, grpc_call(b"bad"))]
    await settle()
    upstream.calls[0].future.set_result(trailers_only(3, b"sku%20bad"))
    for _ in range(4):
        await settle()
        for call in upstream.pending():
            payloads = [i.payload for i in sent_items(call)]
            if payloads == [b"bad"]:
                call.future.set_result(trailers_only(3, b"sku%20bad"))
            else:
                answer_with(call, [envelope.EnvelopeResult(payload=b"ok:" + p) for p in payloads])
    good, bad = [Answer(r) for r in await asyncio.gather(*tasks)]
    assert (good.status, good.message) == (0, b"ok:good")
    assert (bad.status, bad.text) == (3, "sku bad") and bad.metadata[b"x-meshbatch-isolated"] == b"true"


async def test_gzip_callers_are_sent_uncompressed():
    import gzip
    handler, upstream, _clock = make_handler(codec="grpc")
    task = submit(handler, grpc_call(b"", [(b"grpc-encoding", b"gzip")],
                                     raw=frame(gzip.compress(b"packed"), compressed=True)))
    await settle()
    assert [i.payload for i in sent_items(upstream.calls[0])] == [b"packed"]
    assert "grpc-encoding" not in dict(sent_items(upstream.calls[0])[0].metadata)
    answer_with(upstream.calls[0], [envelope.EnvelopeResult(payload=b"ok")])
    assert Answer(await task).message == b"ok"




async def test_items_answered_unavailable_are_retried_as_a_503_would_be():
    from layers_support import cluster, draws, target

    from meshbatch.batching.handler import BatchHandler
    from meshbatch.config.model import Batch, Retry
    from meshbatch.layers.retry import RetryPolicy
    from meshbatch.telemetry.metrics import Registry
    from meshbatch.upstream.exchange import ATTEMPT
    from testbed.grpc_batch import Answer as Read

    chosen = target(cluster())

    class Routed(type(make_handler()[1])):
        async def __call__(self, *args):
            ATTEMPT.get().target = chosen
            return await super().__call__(*args)

    upstream = Routed()
    rules = RetryPolicy("g", Retry(retry_on=["5xx"], num_retries=2, backoff={"base_ms": 1}), None, draws(0.0))
    handler = BatchHandler("g", Batch(codec="grpc"), upstream, timeout=2.0, metrics=Registry(), retry=rules)
    tasks = [submit(handler, grpc_call(b"a")), submit(handler, grpc_call(b"b")), submit(handler, grpc_call(b"c"))]
    await settle()
    answer_with(upstream.calls[0], [envelope.EnvelopeResult(payload=b"A"), envelope.EnvelopeResult(code=14),
                                    envelope.EnvelopeResult(code=5, message="gone")])
    await settle(20)
    assert [i.payload for i in sent_items(upstream.calls[1])] == [b"b"]  # UNAVAILABLE again; NOT_FOUND is final
    upstream.calls[1].future.set_result(trailers_only(14, b"still busy"))  # the whole (one-item) batch refused
    await settle(20)
    assert [i.payload for i in sent_items(upstream.calls[2])] == [b"b"]
    answer_with(upstream.calls[2], [envelope.EnvelopeResult(payload=b"B")])
    a, b, c = [Read(r) for r in await asyncio.gather(*tasks)]
    assert (a.message, b.message, c.status, c.text) == (b"A", b"B", 5, "gone")


async def test_a_plain_http_404_names_the_batch_method_as_unimplemented():
    from meshbatch.http.message import Response

    handler, upstream, _clock = make_handler(codec="grpc")
    task = submit(handler, grpc_call(b"a"))
    await settle()
    upstream.calls[0].future.set_result(Response(404, [(b"content-type", b"text/plain")], b"no"))
    found = Answer(await task)
    assert found.status == 12 and "POST /meshbatch.batch.v1.Batch/Process with 404" in found.text


async def test_a_codec_that_raises_is_internal(monkeypatch):
    handler, upstream, _clock = make_handler(codec="grpc")
    monkeypatch.setattr(handler.codec, "decode", lambda *args: 1 / 0)
    task = submit(handler, grpc_call(b"a"))
    await settle()
    answer_with(upstream.calls[0], [envelope.EnvelopeResult(payload=b"x")])
    found = Answer(await task)
    assert found.status == 13 and found.text == "codec_error: the batch answer could not be split"
    assert found.response.reason == "codec_error"


async def test_a_replayed_answer_is_grpc_too():
    handler, upstream, _clock = make_handler(codec="grpc", dedup_window_ms=1000)
    first = submit(handler, grpc_call(b"a", [(b"idempotency-key", b"k")]))
    await settle()
    answer_with(upstream.calls[0], [envelope.EnvelopeResult(payload=b"once")])
    await first
    again = Answer(await handler(grpc_call(b"a", [(b"idempotency-key", b"k")])))
    assert again.message == b"once" and again.trailers[b"idempotent-replayed"] == b"true"
    assert len(upstream.calls) == 1


async def test_a_batch_refused_with_a_code_grpc_does_not_define_is_unknown():
    handler, upstream, _clock = make_handler(codec="grpc")
    task = submit(handler, grpc_call(b"a"))
    await settle()
    upstream.calls[0].future.set_result(trailers_only(99, b"odd"))
    found = Answer(await task)
    assert (found.status, found.text) == (2, "status code 99: odd")
