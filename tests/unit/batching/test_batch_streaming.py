"""Streamed batch answers (`batch.stream_results`): the line splitter on its own, then the batcher on a fake
clock with a scripted upstream whose answer arrives as a stream, line by line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from batching_support import Call, Upstream, make_handler, request, settle, submit

from meshbatch.batching.codecs.base import ItemResult
from meshbatch.batching.codecs.ndjson import NdjsonCodec
from meshbatch.batching.handler import BatchHandler
from meshbatch.batching.streaming import StreamSplit, index_reader, streams_lines
from meshbatch.config import ConfigError, parse
from meshbatch.config.model import Batch
from meshbatch.errors import UpstreamReset
from meshbatch.http.message import Response
from meshbatch.http.stream import BodyStream
from meshbatch.telemetry.metrics import Registry
from meshbatch.upstream.exchange import STREAM_LIMIT

sys.path.insert(0, str(Path(__file__).parents[1] / "layers"))

NDJSON = [(b"content-type", b"application/x-ndjson")]


# -- the splitter, pure ---------------------------------------------------------------------------------------

def splitter(size: int) -> tuple[StreamSplit, list[tuple[int, ItemResult]]]:
    answered: list[tuple[int, ItemResult]] = []
    return StreamSplit(NdjsonCodec(), size, lambda i, r: answered.append((i, r))), answered


def test_each_line_is_answered_when_it_completes_in_order():
    split, answered = splitter(3)
    split.data(b'{"a":')
    assert answered == []
    split.data(b'1}\n{"b"')
    assert [(i, r.body) for i, r in answered] == [(0, b'{"a":1}')]
    split.data(b':2}\n\n{"c":3}')  # a blank line is no result; the last line may lack its line break
    assert len(answered) == 2
    outcomes = split.end()
    assert [o.body for o in outcomes if isinstance(o, ItemResult)] == [b'{"a":1}', b'{"b":2}', b'{"c":3}']
    assert [i for i, _ in answered] == [0, 1, 2]


def test_a_line_that_is_not_json_fails_its_item_alone():
    split, answered = splitter(3)
    split.data(b'1\n{nope\n"three"\n')
    statuses = [r.status for _, r in answered]
    assert statuses == [200, 502, 200]
    assert answered[1][1].reason == "upstream_not_json" and b"line 2" in answered[1][1].body


def test_invalid_utf8_fails_its_item_alone():
    split, answered = splitter(2)
    split.data(b'"\xff"\n"ok"\n')
    assert [r.status for _, r in answered] == [502, 200]


def test_a_short_answer_fails_the_items_without_a_line_and_extra_lines_are_dropped():
    split, _ = splitter(3)
    split.data(b"1\n")
    outcomes = split.end()
    assert [o.status for o in outcomes if isinstance(o, ItemResult)] == [200, 502, 502]
    assert isinstance(outcomes[1], ItemResult) and outcomes[1].reason == "upstream_result_count"
    split, answered = splitter(1)
    split.data(b"1\n2\n3\n")
    assert len(answered) == 1 and split.extra == 2 and len(split.end()) == 1


def test_a_broken_stream_keeps_the_answers_given_and_fails_the_rest():
    split, answered = splitter(3)
    split.data(b'1\n2\n{"half')
    error = UpstreamReset("upstream_reset", "the connection closed mid-answer")
    outcomes = split.abort(error)
    assert [r.body for _, r in answered] == [b"1", b"2"]
    assert outcomes[2] is error and isinstance(outcomes[0], ItemResult)


@pytest.mark.parametrize("chunks", [[b"\n" * 1000], [b" \r\n"] * 50, [b"x" * 100_000], [b'"\n', b'"', b"\n\n"]])
def test_hostile_streams_never_answer_more_items_than_there_are(chunks):
    split, answered = splitter(2)
    for chunk in chunks:
        split.data(chunk)
    outcomes = split.end()
    assert len(outcomes) == 2 and len(answered) <= 2
    assert all(isinstance(o, ItemResult) for o in outcomes)


def test_only_line_codecs_stream():
    assert streams_lines(NdjsonCodec())
    from meshbatch.batching.codecs.json_array import JsonArrayCodec
    assert not streams_lines(JsonArrayCodec())


# -- the batcher ----------------------------------------------------------------------------------------------

class Source:
    """The upstream connection's end of a stream: records flow control."""

    def __init__(self) -> None:
        self.abandoned = False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def abandon(self) -> None:
        self.abandoned = True


class StreamingUpstream(Upstream):
    """Records the stream limit each call was sent with (the batcher asks for a streamed answer)."""

    def __init__(self) -> None:
        super().__init__()
        self.limits: list[int] = []

    async def __call__(self, *args: Any) -> Response:
        self.limits.append(STREAM_LIMIT.get())
        return await super().__call__(*args)


def stream_reply(call: Call, status: int = 200) -> BodyStream:
    stream = BodyStream(Source(), -1, 1)
    response = Response(status, list(NDJSON), b"")
    response.stream = stream
    call.future.set_result(response)
    return stream


def lines(call: Call) -> list[Any]:
    return [orjson.loads(line) for line in call.body.splitlines()]


async def test_early_items_are_answered_before_the_batch_ends():
    handler, upstream, _ = make_handler(upstream=StreamingUpstream(), codec="ndjson", stream_results=True,
                                        max_items=3)
    tasks = [submit(handler, request({"n": i})) for i in range(3)]
    await settle()
    call, = upstream.calls
    assert lines(call) == [{"n": 0}, {"n": 1}, {"n": 2}]
    stream = stream_reply(call)
    await settle()
    stream.feed(b'{"r":0}\n{"r"')
    await settle()
    assert tasks[0].done() and not tasks[1].done()
    first = tasks[0].result()
    assert first.status == 200 and first.body == b'{"r":0}'
    stream.feed(b':1}\n')
    await settle()
    assert tasks[1].done() and not tasks[2].done()
    assert handler.dispatcher.in_flight == 1  # the slot is the batch's until its answer ends
    stream.feed(b'{"r":2}\n')
    stream.end()
    await settle()
    assert [t.result().body for t in tasks] == [b'{"r":0}', b'{"r":1}', b'{"r":2}']
    assert handler.dispatcher.in_flight == 0
    assert upstream.limits == [1]
    view = handler.summary()["streaming"]
    assert view == {"stream_results": True, "index_field": None, "streamed_items": 3, "broken_streams": 0}
    metrics = handler.metrics
    assert metrics.streamed.get(metrics.labels) == 3
    assert metrics.calls.get(metrics.call_labels["ok"]) == 1


async def test_a_broken_stream_gives_the_rest_the_error_and_keeps_the_answers():
    handler, upstream, _ = make_handler(upstream=StreamingUpstream(), codec="ndjson", stream_results=True,
                                        max_items=3)
    tasks = [submit(handler, request({"n": i})) for i in range(3)]
    await settle()
    stream = stream_reply(upstream.calls[0])
    await settle()
    stream.feed(b'{"r":0}\n')
    stream.fail(UpstreamReset("upstream_reset", "the connection closed mid-answer"))
    await settle()
    assert handler.metrics.calls.get(handler.metrics.call_labels["error"]) == 1
    responses = [t.result() for t in tasks]
    assert [r.status for r in responses] == [200, 502, 502]
    assert all(r.reason == "upstream_reset" for r in responses[1:])
    assert handler.summary()["streaming"]["broken_streams"] == 1


async def test_retries_send_only_the_unanswered_items_again():
    from layers_support import cluster, draws, target

    from meshbatch.config.model import Retry
    from meshbatch.layers.retry import RetryPolicy
    from meshbatch.upstream.exchange import ATTEMPT

    chosen = target(cluster("c", "127.0.0.1:1", "127.0.0.1:2"))

    class Routed(StreamingUpstream):
        async def __call__(self, *args: Any) -> Response:
            attempt = ATTEMPT.get()
            assert attempt is not None
            attempt.target = chosen
            return await super().__call__(*args)

    upstream = Routed()
    rules = RetryPolicy("orders", Retry(retry_on=["reset"], num_retries=2, backoff={"base_ms": 1}), None,
                        draws(0.0))
    handler = BatchHandler("orders", Batch(codec="ndjson", stream_results=True), upstream, timeout=2.0,
                           metrics=Registry(), retry=rules)
    tasks = [submit(handler, request({"n": i})) for i in range(3)]
    await settle()
    stream = stream_reply(upstream.calls[0])
    await settle()
    stream.feed(b'"a"\n')
    stream.fail(UpstreamReset("upstream_reset", "the connection closed mid-answer"))
    await settle(20)
    assert tasks[0].done() and not tasks[1].done()
    again = upstream.calls[1]
    assert lines(again) == [{"n": 1}, {"n": 2}]  # the answered item is not sent again
    second = stream_reply(again)
    await settle()
    second.feed(b'"b"\n"c"\n')
    second.end()
    responses = [await t for t in tasks]
    assert [r.body for r in responses] == [b'"a"', b'"b"', b'"c"']


async def test_a_refused_batch_answer_that_streams_is_read_whole():
    handler, upstream, _ = make_handler(upstream=StreamingUpstream(), codec="ndjson", stream_results=True)
    tasks = [submit(handler, request({"n": i})) for i in range(2)]
    await settle()
    stream = stream_reply(upstream.calls[0], status=503)
    stream.feed(b'{"error": "busy"}')
    stream.end()
    responses = [await t for t in tasks]
    assert [r.status for r in responses] == [502, 502]
    assert all(r.reason == "upstream_status_503" for r in responses)


async def test_an_answer_read_whole_is_split_as_before():
    handler, upstream, _ = make_handler(upstream=StreamingUpstream(), codec="ndjson", stream_results=True)
    tasks = [submit(handler, request({"n": i})) for i in range(2)]
    await settle()
    upstream.calls[0].reply(200, b"1\n2\n", list(NDJSON))
    assert [(await t).body for t in tasks] == [b"1", b"2"]


async def test_a_cancelled_batch_abandons_its_stream():
    handler, upstream, _ = make_handler(upstream=StreamingUpstream(), codec="ndjson", stream_results=True)
    tasks = [submit(handler, request({"n": i})) for i in range(2)]
    await settle()
    stream = stream_reply(upstream.calls[0])
    await settle()
    stream.feed(b"1\n")
    await settle()
    source = stream.source
    await handler.dispatcher.drain(0.0)
    assert isinstance(source, Source) and source.abandoned
    responses = [await t for t in tasks]
    assert [r.status for r in responses] == [200, 504]


async def test_without_stream_results_the_answer_is_read_whole():
    handler, upstream, _ = make_handler(upstream=StreamingUpstream(), codec="ndjson")
    task = submit(handler, request({"n": 0}))
    await settle()
    upstream.calls[0].reply(200, b"1\n", list(NDJSON))
    assert (await task).body == b"1"
    assert upstream.limits == [0]
    assert handler.summary()["streaming"]["stream_results"] is False


@pytest.mark.parametrize("codec", ["json-array", "envelope"])
def test_config_refuses_stream_results_without_ndjson(codec):
    text = ("listeners: [{name: l, listen: '127.0.0.1:0', routes: [{name: r, cluster: c, "
            f"batch: {{codec: {codec}, stream_results: true}}}}]}}]\n"
            "clusters: [{name: c, endpoints: ['127.0.0.1:1']}]\n")
    with pytest.raises(ConfigError) as info:
        parse(text)
    found = [str(p) for p in info.value.problems]
    assert found == [f"listeners[0].routes[0].batch.stream_results: results stream one per line with codec: "
                     f"ndjson, not codec: {codec}"]


def test_stream_results_is_a_boolean():
    with pytest.raises(ValueError):
        Batch(codec="ndjson", stream_results="sometimes")



async def test_a_short_streamed_answer_is_a_bad_answer_for_the_items_without_a_line():
    handler, upstream, _ = make_handler(upstream=StreamingUpstream(), codec="ndjson", stream_results=True,
                                        max_items=3)
    tasks = [submit(handler, request({"n": i})) for i in range(3)]
    await settle()
    stream = stream_reply(upstream.calls[0])
    await settle()
    stream.feed(b'"only"\n')
    stream.end()
    responses = [await t for t in tasks]
    assert [r.status for r in responses] == [200, 502, 502]
    assert responses[1].reason == "upstream_result_count"
    assert handler.metrics.calls.get(handler.metrics.call_labels["bad_answer"]) == 1


# -- matching by the position a line names (stream_index_field) -----------------------------------------------

def indexed(size: int) -> tuple[StreamSplit, list[tuple[int, ItemResult]]]:
    answered: list[tuple[int, ItemResult]] = []
    split = StreamSplit(NdjsonCodec(), size, lambda i, r: answered.append((i, r)), index_reader("i"))
    return split, answered


def test_lines_that_name_their_item_are_answered_in_the_order_they_come():
    split, answered = indexed(3)
    split.data(b'{"i":2,"r":"c"}\n{"i":0,"r":"a"}\n')
    assert [i for i, _ in answered] == [2, 0]
    split.data(b'{"i":1,"r":"b"}\n')
    outcomes = split.end()
    assert [o.body for o in outcomes if isinstance(o, ItemResult)] == [
        b'{"i":0,"r":"a"}', b'{"i":1,"r":"b"}', b'{"i":2,"r":"c"}']
    assert split.extra == 0


@pytest.mark.parametrize("line", [b'{"i":3}', b'{"i":-1}', b'{"i":"0"}', b'{"i":0.5}', b'{"r":1}', b"[0]", b"nope",
                                  b'{"i":99999999999999999999999}', b'{"i":' + b"[" * 5000 + b"]" * 5000 + b"}"])
def test_a_line_without_a_position_of_the_batch_is_dropped(line):
    split, answered = indexed(3)
    split.data(line + b"\n")
    assert answered == [] and split.extra == 1
    outcomes = split.end()
    assert all(isinstance(o, ItemResult) and o.reason == "upstream_result_count" for o in outcomes)


def test_a_second_line_for_an_item_is_dropped_the_first_stands():
    split, answered = indexed(2)
    split.data(b'{"i":0,"v":1}\n{"i":0,"v":2}\n{"i":1}\n')
    assert [r.body for _, r in answered] == [b'{"i":0,"v":1}', b'{"i":1}'] and split.extra == 1


async def test_the_batcher_matches_by_index_when_configured():
    handler, upstream, _ = make_handler(upstream=StreamingUpstream(), codec="ndjson", stream_results=True,
                                        stream_index_field="i", max_items=3)
    tasks = [submit(handler, request({"n": i})) for i in range(3)]
    await settle()
    stream = stream_reply(upstream.calls[0])
    await settle()
    stream.feed(b'{"i":2,"r":2}\n')
    await settle()
    assert tasks[2].done() and not tasks[0].done()
    stream.feed(b'{"i":0,"r":0}\n{"i":1,"r":1}\n')
    stream.end()
    assert [orjson.loads((await t).body)["r"] for t in tasks] == [0, 1, 2]
    assert handler.summary()["streaming"]["index_field"] == "i"


@pytest.mark.parametrize(("batch", "error"), [
    ("{codec: ndjson, stream_index_field: i}",
     "stream_index_field: lines are matched by index only when they stream: set stream_results: true"),
    ("{codec: ndjson, stream_results: true, stream_index_field: 'a-b'}",
     "stream_index_field: must be a field name (letters, digits, _)"),
])
def test_config_checks_the_index_field(batch, error):
    text = ("listeners: [{name: l, listen: '127.0.0.1:0', routes: [{name: r, cluster: c, "
            f"batch: {batch}}}]}}]\nclusters: [{{name: c, endpoints: ['127.0.0.1:1']}}]\n")
    with pytest.raises(ConfigError) as info:
        parse(text)
    assert [str(p) for p in info.value.problems] == [f"listeners[0].routes[0].batch.{error}"]
