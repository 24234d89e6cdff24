"""gRPC unary calls batched into the service's own batch method (AIP-231 BatchGet) from its descriptors: the
request protobuf reads, the answer split per caller with its own status, hostile answers as INTERNAL, and the
config checked at load with the path of each mistake."""

import asyncio
import base64

import pytest
from batching_support import make_handler, settle, submit

from meshbatch.config import ConfigError, parse
from meshbatch.grpc.framing import frame, unary
from testbed.grpc_batch import Answer, grpc_answer, grpc_call

pytest.importorskip("grpc_tools")
from google.rpc import status_pb2

from testbed.grpc_protos import compiled

DESCRIPTORS, pb, _pb_grpc = compiled("inventory")
GRPC = {"descriptor_set": str(DESCRIPTORS), "batch_method": "/inventory.Inventory/BatchGet",
        "items_field": "requests", "results_field": "responses"}
WITH_STATUSES = {**GRPC, "statuses_field": "statuses"}


def get(sku, warehouse=0):
    return pb.GetRequest(sku=sku, warehouse=warehouse).SerializeToString()


def stock(sku, count):
    return pb.Stock(sku=sku, count=count)


def reply(call, **fields):
    call.future.set_result(grpc_answer(pb.BatchGetResponse(**fields).SerializeToString()))


async def callers(n, **config):
    handler, upstream, _clock = make_handler(codec="grpc", isolate="off", **config)
    tasks = [submit(handler, grpc_call(get(f"s{i}", i))) for i in range(n)]
    await settle()
    return upstream, tasks


async def answers(tasks):
    return [Answer(r) for r in await asyncio.gather(*tasks)]


async def test_the_batch_request_is_the_batch_method_with_the_callers_messages():
    upstream, tasks = await callers(3, grpc=GRPC)
    (call,) = upstream.calls
    assert call.path == b"/inventory.Inventory/BatchGet" and (b"te", b"trailers") in call.headers
    sent = pb.BatchGetRequest.FromString(unary(call.body))
    assert list(sent.requests) == [pb.GetRequest(sku=f"s{i}", warehouse=i) for i in range(3)]
    assert sent.parent == "" and not sent.names
    reply(call, responses=[stock(f"s{i}", i * 10) for i in range(3)])
    found = await answers(tasks)
    assert [pb.Stock.FromString(a.message).count for a in found] == [0, 10, 20]
    assert {a.status for a in found} == {0} and {a.trailers[b"x-meshbatch-batch-size"] for a in found} == {b"3"}


async def test_per_item_statuses_with_a_result_for_each_item():
    upstream, tasks = await callers(3, grpc=WITH_STATUSES)
    missing = status_pb2.Status(code=5, message="no sku s1")
    reply(upstream.calls[0], responses=[stock("s0", 1), pb.Stock(), stock("s2", 3)],
          statuses=[status_pb2.Status(), missing, status_pb2.Status(code=0)])
    first, second, third = await answers(tasks)
    assert pb.Stock.FromString(first.message).count == 1 and pb.Stock.FromString(third.message).count == 3
    assert (second.status, second.text, second.message) == (5, "no sku s1", None)
    assert b"grpc-status-details-bin" not in second.metadata  # no details: nothing more to say


async def test_per_item_statuses_with_results_for_the_ok_items_only_and_details():
    upstream, tasks = await callers(3, grpc=WITH_STATUSES)
    denied = status_pb2.Status(code=7, message="not yours")
    denied.details.add().Pack(pb.GetRequest(sku="s1"))
    reply(upstream.calls[0], responses=[stock("s0", 1), stock("s2", 3)],
          statuses=[status_pb2.Status(), denied, status_pb2.Status()])
    _first, second, third = await answers(tasks)
    assert pb.Stock.FromString(third.message).count == 3
    details = second.metadata[b"grpc-status-details-bin"]
    assert second.status == 7 and status_pb2.Status.FromString(base64.b64decode(details + b"==")) == denied


@pytest.mark.parametrize(("fields", "words"), [
    ({"responses": [stock("a", 1)]}, "the batch had 2 items and the answer 1 results"),
    ({"responses": [stock("a", 1)] * 3}, "the answer 3 results"),
    ({"responses": [stock("a", 1)] * 2, "statuses": [status_pb2.Status()]}, "the answer 1 statuses"),
    ({"responses": [], "statuses": [status_pb2.Status(), status_pb2.Status()]}, "2 items have status OK"),
])
async def test_wrong_counts_fail_the_batch_with_internal(fields, words):
    upstream, tasks = await callers(2, grpc=WITH_STATUSES)
    reply(upstream.calls[0], **fields)
    for found in await answers(tasks):
        assert found.status == 13 and words in found.text


@pytest.mark.parametrize(("message", "words"), [
    (b"\x0a\x05ab", "claims 5 bytes"),                            # a result past the end
    (b"\x08\x01", "wire type 0, expected 2"),                     # responses as a varint
    (b"\x12\x03\x0a\x01x", "expected 0"),                         # a Status whose code is bytes
    (b"\x12\x04\x12\x02\xff\xfe", "not UTF-8"),                   # a Status whose message is not text
    (b"\x12\x01\x08", "truncated"),                               # a Status cut in its code
    (b"\x0a\xff\xff\xff\xff\x0f", "claims"),                      # 4 GB claimed
])
async def test_hostile_answers_are_internal(message, words):
    upstream, tasks = await callers(1, grpc=WITH_STATUSES)
    upstream.calls[0].future.set_result(grpc_answer(message))
    (found,) = await answers(tasks)
    assert found.status == 13 and words in found.text and found.response.flag == "UPE"


async def test_a_result_that_is_garbage_reaches_its_caller_as_written():
    upstream, tasks = await callers(1, grpc=GRPC)
    reply_bytes = b"\x0a\x03\xff\xff\xff"  # responses[0] = 3 opaque bytes: the caller's client judges them
    upstream.calls[0].future.set_result(grpc_answer(reply_bytes))
    (found,) = await answers(tasks)
    assert found.status == 0 and found.message == b"\xff\xff\xff"


@pytest.mark.parametrize(("path", "words"), [
    (b"/inventory.Inventory/Other", "takes inventory.Stock, but /inventory.Inventory/BatchGet batches "
                                    "inventory.GetRequest"),
    (b"/inventory.Inventory/Watch", "streaming"),
    (b"/inventory.Inventory/Nope", "has no method 'Nope'"),
    (b"/shop.Cart/Get", "no service 'shop.Cart'"),
])
async def test_a_caller_of_another_method_is_unimplemented(path, words):
    handler, upstream, _clock = make_handler(codec="grpc", grpc=GRPC)
    response = await handler(grpc_call(b"", path=path, raw=frame(get("x"))))
    found = Answer(response)
    assert found.status == 12 and words in found.text and response.reason == "grpc_method_not_batched"
    assert not upstream.calls


async def test_json_over_grpc_is_refused_with_descriptors():
    handler, _upstream, _clock = make_handler(codec="grpc", grpc=GRPC)
    call = grpc_call(get("x"))
    call.request.headers = [(b"content-type", b"application/grpc+json")]
    found = Answer(await handler(call))
    assert found.status == 13 and "application/grpc+json" in found.text


def problems(routes):
    text = ("listeners: [{name: main, listen: '127.0.0.1:0', routes: [" + routes + "]}]\n"
            "clusters: [{name: c, endpoints: ['127.0.0.1:1']}]\n")
    with pytest.raises(ConfigError) as info:
        parse(text)
    return [str(p) for p in info.value.problems]


def route(grpc, match="{path: /inventory.Inventory/Get}"):
    pairs = ", ".join(f"{k}: {v!r}" for k, v in grpc.items())
    return f"{{name: g, cluster: c, match: {match}, batch: {{codec: grpc, grpc: {{{pairs}}}}}}}"


@pytest.mark.parametrize(("grpc", "path", "words"), [
    ({**GRPC, "descriptor_set": "/nonexistent.pb"}, "batch.grpc.descriptor_set", "cannot read /nonexistent.pb"),
    ({**GRPC, "batch_method": "/inventory.Inventory/Batch"}, "batch.grpc.batch_method", "has no method 'Batch'"),
    ({**GRPC, "batch_method": "/inventory.Store/BatchGet"}, "batch.grpc.batch_method", "no service"),
    ({**GRPC, "batch_method": "/inventory.Inventory/Watch"}, "batch.grpc.batch_method", "streaming"),
    ({**GRPC, "items_field": "request"}, "batch.grpc.items_field", "has no field 'request' (it has: names, parent"),
    ({**GRPC, "items_field": "names"}, "batch.grpc.items_field", "must be a repeated message field"),
    ({**GRPC, "items_field": "single"}, "batch.grpc.items_field", "must be a repeated message field"),
    ({**GRPC, "results_field": "statuses"}, "match.path", "returns inventory.Stock"),
    ({**GRPC, "statuses_field": "wrong"}, "batch.grpc.statuses_field", "holds inventory.GetRequest, expected "
                                                                       "google.rpc.Status"),
    ({**GRPC, "items_field": None}, "batch.grpc", "items_field missing"),
])
def test_config_errors_name_their_key(grpc, path, words):
    grpc = {k: v for k, v in grpc.items() if v is not None}
    found = problems(route(grpc))
    assert any(f"listeners[0].routes[0].{path}" in p and words in p for p in found), found


def test_the_routes_method_must_take_the_items_type():
    found = problems(route(GRPC, "{path: /inventory.Inventory/Other}"))
    assert any("routes[0].match.path" in p and "takes inventory.Stock" in p for p in found), found


def test_not_a_descriptor_set(tmp_path):
    bad = tmp_path / "bad.pb"
    bad.write_bytes(b"\xff\xff\xff")
    found = problems(route({**GRPC, "descriptor_set": str(bad)}))
    assert any("batch.grpc.descriptor_set" in p and "not a FileDescriptorSet" in p for p in found), found


def test_a_set_without_its_imports(tmp_path):
    from google.protobuf import descriptor_pb2
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTORS.read_bytes())
    alone = descriptor_pb2.FileDescriptorSet(file=[f for f in files.file if f.name == "inventory.proto"])
    path = tmp_path / "alone.pb"
    path.write_bytes(alone.SerializeToString())
    found = problems(route({**GRPC, "descriptor_set": str(path)}))
    assert any("batch.grpc.descriptor_set" in p and "--include_imports" in p for p in found), found


def test_without_the_extra_the_error_names_it(monkeypatch):
    from meshbatch import extras
    monkeypatch.setattr(extras, "missing", lambda extra: ["google.protobuf"] if extra == "grpc" else [])
    found = problems(route(GRPC))
    assert any("batch.grpc.descriptor_set" in p and "pip install 'meshbatch[grpc]'" in p for p in found), found


def test_other_config_mistakes():
    found = problems("{name: g, cluster: c, batch: {codec: json-array, grpc: {}}}")
    assert any("routes[0].batch" in p and "codec: grpc" in p for p in found), found
    found = problems("{name: g, cluster: c, batch: {codec: grpc, upstream_path: /x}}")
    assert any("routes[0].batch" in p and "leave upstream_path out" in p for p in found), found
    found = problems("{name: g, cluster: c, batch: {codec: grpc, grpc: {batch_method: Process}}}")
    assert any("routes[0].batch.grpc.batch_method" in p and "/package.Service/Method" in p for p in found), found
    found = problems("{name: g, cluster: c, batch: {codec: grpc, grpc: {statuses_field: s}}}")
    assert any("routes[0].batch.grpc" in p and "needs descriptor_set" in p for p in found), found


def test_no_pipeline_on_a_grpc_route():
    found = problems("{name: g, cluster: c, batch: {codec: grpc}, pipeline: [{decode: {format: json}}]}")
    assert any("routes[0].pipeline" in p and "no pipeline steps" in p for p in found), found
