import orjson
import pytest

from meshbatch.batching.codecs import CODECS, ItemRequest


def items(*bodies, headers=None):
    out = []
    for n, body in enumerate(bodies, 1):
        out.append(ItemRequest(str(n), body, b"POST", f"/orders?n={n}".encode(), list(headers or [])))
    return out


def error_of(result):
    return orjson.loads(result.body)


def test_registry_has_the_codecs():
    assert CODECS.names() == ["envelope", "grpc", "json-array", "ndjson"]
    for name in CODECS.names():
        codec = CODECS.get(name)(None)
        assert codec.name == name and isinstance(codec.content_type, bytes)


@pytest.mark.parametrize("name", ["json-array", "ndjson"])
def test_json_codecs_round_trip(name):
    codec = CODECS.get(name)()
    batch = items(b'{"a": 1}', b"[1,2]", b'"x"', b"null")
    body = codec.encode(batch)
    if name == "json-array":
        assert orjson.loads(body) == [{"a": 1}, [1, 2], "x", None]
    else:
        assert body.endswith(b"\n") and [orjson.loads(line) for line in body.splitlines()] == [
            {"a": 1}, [1, 2], "x", None]
    answer = [{"r": 1}, {"r": 2}, 3, "four"]
    wire = orjson.dumps(answer) if name == "json-array" else b"\n".join(orjson.dumps(v) for v in answer) + b"\n"
    results = codec.decode(200, [], wire, batch)
    assert [r.status for r in results] == [200] * 4
    assert [orjson.loads(r.body) for r in results] == answer
    assert all(dict(r.headers)[b"content-type"] == b"application/json" for r in results)


def test_ndjson_keeps_pretty_bodies_on_one_line_byte_for_byte():
    # Line breaks in valid JSON are whitespace between tokens: they become spaces, nothing is re-serialised.
    codec = CODECS.get("ndjson")()
    body = codec.encode(items(b'{\r\n  "a": 1.0,\n  "b": 123456789012345678901234567890\n}', b"2"))
    assert body == b'{    "a": 1.0,   "b": 123456789012345678901234567890 }\n2\n'


@pytest.mark.parametrize("name", ["json-array", "ndjson", "envelope"])
def test_bad_item_bodies_are_refused_before_queueing(name):
    codec = CODECS.get(name)()
    assert codec.check_item(items(b"{}")[0]) is None
    reason = codec.check_item(items(b"{nope")[0])
    assert reason and "not valid JSON" in reason


@pytest.mark.parametrize(("name", "wire", "reason"), [
    ("json-array", b"not json", "upstream_not_json"),
    ("json-array", b'{"a": 1}', "upstream_not_array"),
    ("json-array", b"[1]", "upstream_result_count"),
    ("json-array", b"[1,2,3]", "upstream_result_count"),
    ("ndjson", b"1\n{bad\n", "upstream_not_json"),
    ("ndjson", b"1\n", "upstream_result_count"),
    ("envelope", b"[]", "upstream_not_envelope"),
    ("envelope", b"nope", "upstream_not_json"),
])
def test_unusable_answers_fail_every_caller_with_502_and_a_reason(name, wire, reason):
    codec = CODECS.get(name)()
    results = codec.decode(200, [], wire, items(b"1", b"2"))
    assert len(results) == 2
    for result in results:
        assert result.status == 502 and result.reason == reason
        payload = error_of(result)
        assert payload["error"] == "bad gateway" and payload["reason"] == reason and payload["detail"]


@pytest.mark.parametrize("name", ["json-array", "ndjson", "envelope"])
def test_upstream_non_2xx_keeps_the_status_visible(name):
    codec = CODECS.get(name)()
    results = codec.decode(503, [(b"retry-after", b"7")], b"busy", items(b"1", b"2", b"3"))
    assert len(results) == 3
    for result in results:
        assert result.status == 502 and result.reason == "upstream_status_503"
        assert error_of(result)["upstream_status"] == 503
        assert (b"retry-after", b"7") in result.headers


def test_envelope_request_shape():
    codec = CODECS.get("envelope")()
    batch = items(b'{"sku": 1}', b"", headers=[(b"content-type", b"application/json"), (b"x-tenant", b"a")])
    batch.append(ItemRequest("3", b"plain text", b"PUT", b"/notes", [(b"content-type", b"text/plain")]))
    data = orjson.loads(codec.encode(batch))
    first, second, third = data["requests"]
    assert first == {"id": "1", "method": "POST", "url": "/orders?n=1",
                     "headers": {"content-type": "application/json", "x-tenant": "a"}, "body": {"sku": 1}}
    assert "body" not in second
    assert third["body"] == "plain text" and third["method"] == "PUT"


def test_envelope_refuses_non_utf8_text_bodies():
    codec = CODECS.get("envelope")()
    bad = ItemRequest("1", b"\xff\xfe", b"POST", b"/", [(b"content-type", b"application/octet-stream")])
    assert "UTF-8" in codec.check_item(bad)


def test_envelope_matches_by_id_in_any_order_with_per_item_status():
    codec = CODECS.get("envelope")()
    batch = items(b"1", b"2", b"3", b"4")
    answer = {"responses": [
        {"id": "3", "status": 404, "body": {"error": "nope"}},
        {"id": "1", "status": 201, "headers": {"Location": "/orders/1", "Content-Length": "9"}, "body": {"ok": 1}},
        {"id": 4, "status": 200, "headers": {"content-type": "text/plain"}, "body": "hello"},
    ]}
    results = codec.decode(200, [], orjson.dumps(answer), batch)
    assert [r.status for r in results] == [201, 502, 404, 200]
    assert orjson.loads(results[0].body) == {"ok": 1}
    assert (b"location", b"/orders/1") in results[0].headers
    assert all(name != b"content-length" for name, _ in results[0].headers)
    assert (b"content-type", b"application/json") in results[0].headers
    assert results[1].reason == "missing_item_result" and "'2'" in error_of(results[1])["detail"]
    assert results[3].body == b"hello"


@pytest.mark.parametrize(("entry", "reason"), [
    ({"id": "1", "status": "ok"}, "bad_item_status"),
    ({"id": "1", "status": 99}, "bad_item_status"),
    ({"id": "1", "status": True}, "bad_item_status"),
    ({"id": "1", "status": 200, "headers": []}, "bad_item_headers"),
])
def test_envelope_bad_entries_fail_only_their_item(entry, reason):
    codec = CODECS.get("envelope")()
    answer = {"responses": [entry, {"id": "2", "status": 200, "body": 2}]}
    first, second = codec.decode(200, [], orjson.dumps(answer), items(b"1", b"2"))
    assert first.status == 502 and first.reason == reason
    assert second.status == 200 and second.body == b"2"


def test_envelope_without_body_gives_an_empty_one():
    codec = CODECS.get("envelope")()
    (result,) = codec.decode(200, [], b'{"responses":[{"id":"1","status":204}]}', items(b"1"))
    assert result.status == 204 and result.body == b""


EXACT = [b"123456789012345678901234567890", b"-98765432109876543210.5e-3", b"1.0", b"1", b"-0.0", b'"\\u00e9\\n"',
         b'{"a" : [1.50, 18446744073709551616]}', b"null"]


@pytest.mark.parametrize("name", ["json-array", "ndjson", "envelope"])
def test_each_caller_gets_the_exact_bytes_the_upstream_wrote(name):
    codec = CODECS.get(name)()
    batch = items(*[b"0"] * len(EXACT))
    if name == "json-array":
        wire = b"[ " + b" ,\n ".join(EXACT) + b" ]"
    elif name == "ndjson":
        wire = b"\r\n".join(EXACT) + b"\n"
    else:
        wire = b'{"responses": [' + b",".join(
            b'{"id": %d, "status": 200, "body": %s}' % (n, value) for n, value in enumerate(EXACT, 1)) + b"]}"
    results = codec.decode(200, [], wire, batch)
    expected = [b"" if name == "envelope" and value == b"null" else value for value in EXACT]
    assert [r.body for r in results] == expected and {r.status for r in results} == {200}


def test_item_bodies_are_spliced_unchanged_into_every_codec():
    body = b'{"big": 123456789012345678901234567890, "f": 1.0, "z": -0.0, "s": "\\u00e9"}'
    for name in ("json-array", "ndjson", "envelope"):
        codec = CODECS.get(name)()
        batch = items(body, headers=[(b"content-type", b"application/json")])
        assert codec.check_item(batch[0]) is None
        assert body in codec.encode(batch), name


def test_envelope_text_bodies_are_unquoted_and_json_ones_kept():
    codec = CODECS.get("envelope")()
    answer = (b'{"responses": [{"id": "1", "status": 200, "headers": {"content-type": "text/plain"}, '
              b'"body": "caf\\u00e9 [1.0]"}, {"id": "2", "status": 200, "body": "caf\\u00e9"}]}')
    text, quoted = codec.decode(200, [], answer, items(b"1", b"2"))
    assert text.body == "café [1.0]".encode() and quoted.body == b'"caf\\u00e9"'


@pytest.mark.parametrize("name", ["json-array", "ndjson", "envelope"])
@pytest.mark.parametrize("wire", [b'["\xff\xfe"]', b"[" * 3000 + b"]" * 3000, b'["\\ud800"]'])
def test_answers_that_are_not_readable_json_fail_every_caller(name, wire):
    if name == "envelope":
        wire = b'{"responses": [{"id": "1", "status": 200, "body": ' + wire + b"}]}"
    results = CODECS.get(name)().decode(200, [], wire, items(b"1"))
    assert [r.reason for r in results] == ["upstream_not_json"]


FORM = (b"content-type", b"application/x-www-form-urlencoded")  # what `curl -d` sends when told nothing


@pytest.mark.parametrize("name", ["json-array", "ndjson", "envelope"])
def test_every_codec_reads_a_json_body_as_json_whatever_its_content_type(name):
    codec = CODECS.get(name)()
    item = ItemRequest("1", b'{"sku": "A1"}', b"POST", b"/orders", [FORM, (b"x-tenant", b"a")])
    assert codec.check_item(item) is None
    body = codec.encode([item])
    sent = {"json-array": lambda: orjson.loads(body)[0], "ndjson": lambda: orjson.loads(body),
            "envelope": lambda: orjson.loads(body)["requests"][0]["body"]}[name]()
    assert sent == {"sku": "A1"}


def test_envelope_relabels_a_json_body_under_another_label_and_keeps_text_as_text():
    codec = CODECS.get("envelope")()
    json_form = ItemRequest("1", b'{"sku": "A1"}', b"POST", b"/o", [FORM, (b"x-tenant", b"a")])
    text_form = ItemRequest("2", b"sku=A1&n=2", b"POST", b"/o", [FORM])
    text = ItemRequest("3", b"hello", b"POST", b"/o", [(b"content-type", b"text/plain; charset=utf-8")])
    unlabelled = ItemRequest("4", b"[1, 2]", b"POST", b"/o", [])
    for item in (json_form, text_form, text, unlabelled):
        assert codec.check_item(item) is None
    first, second, third, fourth = orjson.loads(codec.encode([json_form, text_form, text, unlabelled]))["requests"]
    assert first["body"] == {"sku": "A1"}
    assert first["headers"] == {"content-type": "application/json", "x-tenant": "a"}
    assert second["body"] == "sku=A1&n=2"
    assert second["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert third["body"] == "hello" and third["headers"]["content-type"] == "text/plain; charset=utf-8"
    assert fourth["body"] == [1, 2] and fourth["headers"] == {}


@pytest.mark.parametrize(("body", "content_type", "problem"), [
    (b'{"sku": ', b"application/json", "not valid JSON"),  # labelled JSON: must be JSON
    (b"[" * 65 + b"]" * 65, b"application/x-www-form-urlencoded", "levels deep"),  # JSON: the same depth bound
    (b"\xff\xfe", b"application/x-www-form-urlencoded", "UTF-8"),  # not JSON, not text
])
def test_envelope_refusals_under_any_label(body, content_type, problem):
    codec = CODECS.get("envelope")()
    assert problem in codec.check_item(ItemRequest("1", body, b"POST", b"/", [(b"content-type", content_type)]))
