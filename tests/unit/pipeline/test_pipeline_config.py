"""Pipeline and ingest config errors are caught at load, each with its path."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshbatch.config import ConfigError, parse


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return [str(p) for p in info.value.problems]


def config(route: str, clusters: str = "clusters: [{name: c, endpoints: ['127.0.0.1:1']}]") -> str:
    return f"listeners:\n  - name: l\n    listen: 127.0.0.1:0\n    routes:\n{route}\n{clusters}\n"


def test_a_good_pipeline_and_ingest_route_loads(tmp_path: Path) -> None:
    schema = tmp_path / "s.json"
    schema.write_text('{"type": "object"}')
    loaded = parse(config(f"""
      - name: events
        pipeline:
          - decompress:
          - decode: {{format: ndjson}}
          - validate: {{schema: {schema}, on_invalid: dead_letter}}
          - filter: 'temperature > 30 and site == "eu"'
          - transform: {{rename: {{t: temperature}}, stamp: at}}
        ingest:
          ack: delivered
          sink: {{type: postgres, url: 'postgresql://postgres@127.0.0.1/test', columns: {{t: {{field: temperature,
                  type: double}}, site: site}}}}
      - name: batched
        cluster: c
        batch: {{max_items: 8}}
        pipeline: [decode, {{compress: {{encoding: zstd}}}}]"""))
    route = loaded.listeners[0].routes[0]
    assert [s.stage for s in route.pipeline] == ["decompress", "decode", "validate", "filter", "transform"]
    assert route.ingest is not None and route.ingest.sink.type == "postgres" and route.cluster == ""


def test_filter_expression_errors_have_their_path_and_column() -> None:
    found = problems(config("""
      - name: events
        pipeline: [decode, {filter: 'temperature >> 30'}, {filter: {expr: 'eval(x)'}}]
        ingest: {}"""))
    assert found == [
        "listeners[0].routes[0].pipeline[1].filter.expr: column 14: expected a value, found '>'",
        "listeners[0].routes[0].pipeline[2].filter.expr: column 1: unknown function 'eval'; known: contains, "
        "endswith, exists, len, lower, matches, startswith, upper",
    ]


def test_schema_problems(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    found = problems(config(f"""
      - name: events
        pipeline:
          - decode:
          - validate: {{schema: {tmp_path}/missing.json}}
          - validate: {{schema: {bad}}}
          - validate: {{schema: {{type: 12}}}}
        ingest: {{}}"""))
    assert found[0].startswith(f"listeners[0].routes[0].pipeline[1].validate.schema: cannot read schema file "
                               f"{tmp_path}/missing.json")
    assert found[1].startswith("listeners[0].routes[0].pipeline[2].validate.schema: schema file")
    assert found[2] == ("listeners[0].routes[0].pipeline[3].validate.schema: not a valid JSON Schema at type: "
                        "12 is not valid under any of the given schemas")


def test_stage_order_and_placement() -> None:
    found = problems(config("""
      - name: plain
        cluster: c
        pipeline: [decode]
      - name: batched
        cluster: c
        batch: {}
        pipeline: [{filter: 'a > 1'}, decode, decode, {validate: {schema: {}, on_invalid: dead_letter}}]
      - name: stored
        pipeline: [{compress: {}}]
        ingest: {sink: {type: sqlite}}"""))
    assert found == [
        "listeners[0].routes[0].pipeline: a pipeline runs on a route with batch: or ingest:",
        "listeners[0].routes[1].pipeline[0].filter: filter works on events: put a decode stage before it",
        "listeners[0].routes[1].pipeline[2].decode: decode appears twice in this pipeline",
        "listeners[0].routes[1].pipeline[3].validate.on_invalid: dead_letter needs an ingest route (it has the dead "
        "letters)",
        "listeners[0].routes[2].pipeline[0].compress: compress applies to batches sent to a cluster; this route's "
        "sink is a database",
    ]


def test_step_shape_errors() -> None:
    found = problems(config("""
      - name: r
        pipeline: [{decode: {}, filter: 'a > 1'}, {unzip: {}}, {decode: {formt: json}}]
        ingest: {}"""))
    assert "listeners[0].routes[0].pipeline[0]: a step names exactly one stage of decompress, decode, validate, " \
           "filter, transform, compress (got decode, filter)" in found
    assert "listeners[0].routes[0].pipeline[1].unzip: unknown key" in found[1]
    assert "listeners[0].routes[0].pipeline[2].decode.formt: unknown key; did you mean 'format'?" in found


def test_ingest_problems() -> None:
    found = problems(config("""
      - name: a
        ingest: {log: {backend: kafka}, sink: {type: postgres}}
      - name: b
        ingest:
          ack: delivered
          log: {backend: jetstream, path: /tmp/x}
          sink: {type: sqlite, table: 'drop table', id_column: payload,
                 columns: {payload: x, 'bad name': y, ok: 'a..b'}}
      - name: c
        cluster: c
        batch: {key: ['header:x-tenant']}
        ingest: {sink: {codec: xml, upstream_path: nope}, delivery: {backoff_initial_ms: 5000, backoff_max_ms: 10}}
      - name: d
        ingest: {sink: {type: cluster}}
      - name: e
        ingest: {log: {path: /tmp/same.db}, sink: {path: /tmp/same.db}}"""))
    assert found == [  # the shape of each route first (a key of another kind of route), then its meaning
        "listeners[0].routes[2].batch.key: batch keys are not supported on ingest routes",
        "listeners[0].routes[3].cluster: is required",
        "listeners[0].routes[0].ingest.log.backend: unknown log backend 'kafka'; known: jetstream, sqlite",
        "listeners[0].routes[0].ingest.sink.url: is required for a postgres sink (postgresql://user@host:port/db)",
        "listeners[0].routes[1].ingest.ack: delivered needs a log read by this process only (sqlite); with "
        "jetstream, another replica may deliver the event",
        "listeners[0].routes[1].ingest.log.path: only the sqlite backend has a path",
        "listeners[0].routes[1].ingest.sink.table: 'drop table' is not a valid table name (letters, digits, _; "
        "optionally schema.table)",
        "listeners[0].routes[1].ingest.sink.columns.payload: column 'payload' is also id_column",
        "listeners[0].routes[1].ingest.sink.columns.bad name: 'bad name' is not a valid column name",
        "listeners[0].routes[1].ingest.sink.columns.ok: 'a..b' is not a field path (names joined by dots)",
        "listeners[0].routes[2].ingest.sink.codec: unknown codec 'xml'; known: envelope, json-array, ndjson",
        "listeners[0].routes[2].ingest.sink.upstream_path: must start with '/'",
        "listeners[0].routes[2].ingest.delivery.backoff_initial_ms: must be <= backoff_max_ms",
        "listeners[0].routes[4].ingest.sink.path: the sink and the log must be different files",
    ]


def test_admin_token_must_be_long_enough() -> None:
    found = problems("admin: {token: short}\n" + config("      - {name: r, ingest: {}}"))
    assert found == ["admin.token: must be at least 16 printable characters without spaces"]


def test_an_ingest_sink_cannot_use_the_grpc_codec() -> None:
    found = problems(config("""
      - name: g
        cluster: c
        ingest: {sink: {type: cluster, codec: grpc}}"""))
    assert found == ["listeners[0].routes[0].ingest.sink.codec: grpc batches callers' gRPC calls on a batch "
                     "route; an ingest sink delivers events in envelope, json-array, ndjson"]
