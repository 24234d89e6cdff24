"""Config error messages that say what to write: keys one level too high, addresses, YAML syntax, near names."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from meshbatch.config import ConfigError, load, parse
from meshbatch.config.load import did_you_mean
from meshbatch.config.notes import notes
from meshbatch.runtime import checks  # noqa: F401  (every check of meaning, registered)

ROUTE = ("listeners: [{name: l, listen: '127.0.0.1:0', routes: [{name: r, cluster: c, %s}]}]\n"
         "clusters: [{name: c, endpoints: ['127.0.0.1:1']}]\n")
AT = "listeners[0].routes[0]"


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ("upstream_path: /x", f"{AT}.upstream_path: unknown key; it belongs under batch: ({AT}.batch.upstream_path)"),
        ("batch: {}, max_items: 3", f"{AT}.max_items: unknown key; it belongs under batch: ({AT}.batch.max_items)"),
        ("codec: ndjson", f"{AT}.codec: unknown key; it belongs under batch: ({AT}.batch.codec)"),
        ("ingest: {}, max_attempts: 3",
         f"{AT}.max_attempts: unknown key; it belongs under ingest.delivery: ({AT}.ingest.delivery.max_attempts)"),
        ("ingest: {}, codec: ndjson",
         f"{AT}.codec: unknown key; it belongs under ingest.sink: ({AT}.ingest.sink.codec)"),
        ("frobnicate: 1", f"{AT}.frobnicate: unknown key"),  # a key found nowhere below: no hint
        ("batch: {}, matsh: {}", f"{AT}.matsh: unknown key; did you mean 'match'?"),  # a near name comes first
    ],
)
def test_a_key_of_a_block_below_says_where_it_belongs(keys: str, expected: str) -> None:
    assert problems(ROUTE % keys) == [expected]


def test_a_port_alone_as_listen_says_what_an_address_is() -> None:
    assert problems("listeners: [{name: l, listen: 37080}]") == [
        "listeners[0].listen: must be HOST:PORT, e.g. 0.0.0.0:37080 (a port alone is not an address)"]
    assert problems("listeners: [{name: l, listen: [1]}]") == [
        "listeners[0].listen: must be HOST:PORT, e.g. 0.0.0.0:8080"]
    assert problems("admin: {listen: 9901}\nlisteners: []")[0].startswith("admin.listen: must be HOST:PORT")


def test_a_short_codec_name_suggests_the_codec_it_begins() -> None:
    found = problems(ROUTE % "batch: {codec: json}")
    assert found == [f"{AT}.batch.codec: unknown codec 'json'; did you mean 'json-array'?; known: envelope, "
                     "grpc, json-array, ndjson"]


def test_did_you_mean_prefers_a_name_that_starts_with_the_word() -> None:
    assert did_you_mean("json", ["ndjson", "json-array", "envelope"]) == "; did you mean 'json-array'?"
    assert did_you_mean("jsn-array", ["ndjson", "json-array"]) == "; did you mean 'json-array'?"
    assert did_you_mean("round", ["round_robin", "round_robin_weighted"]) == "; did you mean 'round_robin'?"
    assert did_you_mean("zzz", ["ndjson"]) == ""


def test_a_yaml_syntax_error_quotes_its_line_with_a_caret() -> None:
    text = "listeners:\n  - name: l\n    listen: a: b\n"
    first, *excerpt = problems(text)[0].splitlines()
    assert first.startswith("line 3, column 14: mapping values are not allowed")  # libyaml: "in this context"
    assert excerpt == ["        listen: a: b", "                 ^"]


def test_an_unclosed_quote_points_where_it_opens_not_past_the_end() -> None:
    found = problems("a: 1\nb: 'x\nc: 2\n\n")
    assert found == ["line 2, column 4: found unexpected end of stream while scanning a quoted scalar\n"
                     "    b: 'x\n"
                     "       ^"]


def test_a_bad_indent_points_at_the_line_that_has_it() -> None:
    found = problems("a: 1\nb:\n  c: 1\n d: 2\n")
    assert found[0].splitlines() == ["line 4, column 2: did not find expected key", "     d: 2", "     ^"]


BATCH_ROUTES = """
listeners:
  - name: l
    listen: 127.0.0.1:0
    routes:
      - {name: plain, cluster: c}
      - {name: implied, cluster: c, batch: {max_items: 8}}
      - {name: by-kind, cluster: c, kind: batch}
      - {name: named, cluster: c, batch: {upstream_path: /orders/batch}}
      - {name: put, cluster: c, batch: {upstream_method: PUT}}
      - {name: events, cluster: c, ingest: {sink: {type: cluster}}}
clusters: [{name: c, endpoints: ['127.0.0.1:1']}]
"""


def test_a_note_for_each_batch_route_on_the_default_upstream_path() -> None:
    found = notes(parse(BATCH_ROUTES))
    assert [note.split(":")[0] for note in found] == [
        "listeners[0].routes[1] (implied)", "listeners[0].routes[2] (by-kind)", "listeners[0].routes[4] (put)"]
    assert found[0].endswith("batch.upstream_path is not set; its batches are sent as POST /batch (the default)")
    assert "PUT /batch" in found[2]


def test_load_logs_the_notes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(BATCH_ROUTES)
    with caplog.at_level(logging.INFO, logger="meshbatch.config"):
        load(path)
    logged = [r.getMessage() for r in caplog.records if r.name == "meshbatch.config"]
    assert len(logged) == 3 and logged[0].startswith(f"{path}: note: listeners[0].routes[1] (implied)")


@pytest.mark.parametrize("text", ["admin:\n  token: s3cr3t: x\n", "a:\n  - \"password\": s3cr3t: x\n",
                                  "h:\n  Authorization: Bearer s3cr3t: x\n"])
def test_the_quoted_line_never_shows_a_secret_value(text: str) -> None:
    found = problems(text)
    assert "s3cr3t" not in found[0] and "<redacted>" in found[0].splitlines()[1]
