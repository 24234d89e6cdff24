"""Route kinds: decided once at load from a route's keys (or an explicit `kind:` that agrees with them); a key of
another kind is an error with its path; an ingest route's deliveries have their own defaults."""

from __future__ import annotations

from textwrap import dedent

import pytest

from meshbatch.config import ConfigError, parse
from meshbatch.config.model import BatchRoute, Config, IngestRoute, PlainRoute, Route
from meshbatch.ingest.route import DEFAULT_LINGER_MS, flush_policy


def config(routes: str) -> str:
    return dedent("""
        listeners:
          - name: main
            listen: 127.0.0.1:0
            routes:
        """) + dedent(routes).replace("\n", "\n      ") + "\nclusters: [{name: c, endpoints: ['127.0.0.1:1']}]\n"


def routes(text: str) -> list[Route]:
    return list(parse(config(text)).listeners[0].routes)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(config(text))
    return [str(p) for p in info.value.problems]


def test_the_kind_comes_from_the_keys_as_before() -> None:
    plain, batch, ingest, both = routes("""
      - {name: p, cluster: c}
      - {name: b, cluster: c, batch: {max_items: 8}}
      - {name: i, ingest: {sink: {type: sqlite}}}
      - {name: ib, cluster: c, batch: {max_items: 8}, ingest: {}}""")
    assert isinstance(plain, PlainRoute) and plain.kind == "plain"
    assert isinstance(batch, BatchRoute) and batch.kind == "batch" and batch.batch.max_items == 8
    assert isinstance(ingest, IngestRoute) and ingest.kind == "ingest"
    assert isinstance(both, IngestRoute), "an ingest: block makes an ingest route, with or without batch:"


def test_a_key_of_another_kind_left_empty_says_nothing() -> None:
    plain, ingest = routes("""
      - name: p
        cluster: c
        batch:
        ingest:
        pipeline: []
      - {name: i, ingest: {}, retry: null, split: [], subset: {}}""")
    assert isinstance(plain, PlainRoute) and isinstance(ingest, IngestRoute)


def test_an_explicit_kind_that_agrees() -> None:
    plain, batch, ingest, legacy = routes("""
      - {name: p, kind: plain, cluster: c}
      - {name: b, kind: batch, cluster: c}
      - {name: i, kind: ingest}
      - {name: l, kind: ingest, cluster: c, batch: {max_items: 9}}""")
    assert isinstance(plain, PlainRoute)
    assert isinstance(batch, BatchRoute) and batch.batch.max_items == 64, "kind: batch alone: the batch defaults"
    assert isinstance(ingest, IngestRoute) and ingest.ingest.sink.type is None
    assert isinstance(legacy, IngestRoute) and legacy.ingest.delivery.max_items == 9


def test_a_kind_that_disagrees_with_the_keys_is_an_error_at_kind() -> None:
    found = problems("""
      - {name: p, kind: plain, cluster: c, batch: {}}
      - {name: b, kind: batch, cluster: c, ingest: {}}
      - {name: x, kind: stream, cluster: c}""")
    assert found == [
        "listeners[0].routes[0].kind: 'plain' does not agree with the route's batch: block; write kind: batch, or "
        "leave kind out",
        "listeners[0].routes[1].kind: 'batch' does not agree with the route's ingest: block; write kind: ingest, "
        "or leave kind out",
        "listeners[0].routes[2].kind: must be one of plain, batch, ingest",
    ]


def test_keys_of_another_kind_are_refused_with_their_path() -> None:
    found = problems("""
      - {name: p, cluster: c, pipeline: [decode], pipeline_limits: {workers: 0}}
      - {name: i, cluster: c, ingest: {}, retry: {attempts: 2}, split: [{cluster: c, weight: 1}], mirror: {cluster: c}}
      - {name: j, cluster: c, ingest: {}, batch: {max_wait_ms: 3, key: ['header:x'], max_items: 5}}
      - {name: q, cluster: c, retyr: {}}""")
    assert sorted(found) == [
        "listeners[0].routes[0].pipeline: a pipeline runs on a route with batch: or ingest:",
        "listeners[0].routes[0].pipeline_limits: a pipeline runs on a route with batch: or ingest:",
        "listeners[0].routes[1].mirror: does not apply to an ingest route (its delivery retries are set in "
        "ingest.delivery)",
        "listeners[0].routes[1].retry: does not apply to an ingest route (its delivery retries are set in "
        "ingest.delivery)",
        "listeners[0].routes[1].split: does not apply to an ingest route (its delivery retries are set in "
        "ingest.delivery)",
        "listeners[0].routes[2].batch.key: batch keys are not supported on ingest routes",
        "listeners[0].routes[2].batch.max_wait_ms: does not apply to an ingest route (its deliveries are set in "
        "ingest.delivery)",
        "listeners[0].routes[3].retyr: unknown key; did you mean 'retry'?",
    ]


def test_errors_inside_a_route_keep_their_path() -> None:
    found = problems("""
      - {name: b, cluster: c, batch: {max_items: 0}}
      - {name: i, ingest: {delivery: {max_items: 0}}, batch: {max_in_flight: 0}}
      - {name: p, cluster: c, timeout_ms: 0}""")
    assert found == [
        "listeners[0].routes[0].batch.max_items: must be >= 1",
        "listeners[0].routes[1].ingest.delivery.max_items: must be >= 1",
        "listeners[0].routes[1].batch.max_in_flight: must be >= 1",
        "listeners[0].routes[2].timeout_ms: must be >= 1",
    ]


def test_ingest_deliveries_have_their_own_defaults() -> None:
    to_db, to_cluster = routes("""
      - {name: d, ingest: {sink: {type: sqlite}}}
      - {name: k, cluster: c, ingest: {}}""")
    assert isinstance(to_db, IngestRoute) and isinstance(to_cluster, IngestRoute)
    delivery, sink = to_cluster.ingest.delivery, to_cluster.ingest.sink
    assert (delivery.max_items, delivery.max_bytes, delivery.max_in_flight) == (1000, 4_194_304, None)
    assert (sink.codec, sink.upstream_path, sink.upstream_method) == ("json-array", "/batch", "POST")
    assert (flush_policy(to_db).max_in_flight, flush_policy(to_cluster).max_in_flight) == (1, 2)
    assert flush_policy(to_cluster).max_items == 1000


def test_an_ingest_delivery_lingers_unless_its_producers_wait_for_it() -> None:
    fsync, memory, delivered, none, given = routes("""
      - {name: f, ingest: {}}
      - {name: m, ingest: {ack: memory}}
      - {name: d, ingest: {ack: delivered}}
      - {name: n, ingest: {ack: fsync, delivery: {linger_ms: 0}}}
      - {name: g, ingest: {ack: delivered, delivery: {linger_ms: 2.5}}}""")
    lingers = [flush_policy(route).linger for route in (fsync, memory, delivered, none, given)]  # type: ignore[arg-type]
    assert lingers == [DEFAULT_LINGER_MS / 1000, DEFAULT_LINGER_MS / 1000, 0.0, 0.0, 0.0025]
    assert DEFAULT_LINGER_MS == 10.0


def test_an_older_configs_batch_block_still_sets_an_ingest_routes_deliveries() -> None:
    defaults, given, explicit = routes("""
      - {name: a, cluster: c, ingest: {}, batch: {}}
      - name: b
        cluster: c
        ingest: {}
        batch: {max_items: 7, max_bytes: 99, max_in_flight: 3, codec: ndjson, upstream_path: /in, upstream_method: PUT}
      - name: e
        cluster: c
        ingest: {delivery: {max_items: 11}, sink: {codec: envelope}}
        batch: {max_items: 7, codec: ndjson}""")
    for route in (defaults, given, explicit):
        assert isinstance(route, IngestRoute)
    assert isinstance(defaults, IngestRoute) and isinstance(given, IngestRoute) and isinstance(explicit, IngestRoute)
    d = defaults.ingest.delivery
    assert (d.max_items, d.max_bytes, d.max_in_flight) == (64, 1_048_576, 4), "batch:'s own defaults, as before"
    policy = flush_policy(given)
    assert (policy.max_items, policy.max_bytes, policy.max_in_flight) == (7, 99, 3)
    sink = given.ingest.sink
    assert (sink.codec, sink.upstream_path, sink.upstream_method) == ("ndjson", "/in", "PUT")
    assert explicit.ingest.delivery.max_items == 11 and explicit.ingest.sink.codec == "envelope", \
        "ingest's own values win over batch:'s"


def test_route_model_validate_builds_the_kind_its_keys_make() -> None:
    assert isinstance(Route.model_validate({"name": "r"}), PlainRoute)
    assert isinstance(Route.model_validate({"name": "r", "batch": {}}), BatchRoute)
    assert isinstance(Route.model_validate({"name": "r", "ingest": {}}), IngestRoute)
    assert isinstance(BatchRoute.model_validate({"name": "r"}), BatchRoute)


def test_a_dump_loads_back_to_the_same_config() -> None:
    loaded = parse(config("""
      - {name: p, cluster: c}
      - {name: b, cluster: c, batch: {max_items: 8}}
      - {name: i, cluster: c, ingest: {}, batch: {max_items: 5}}"""))
    dumped = loaded.model_dump(mode="json", by_alias=True)
    assert [r["kind"] for r in dumped["listeners"][0]["routes"]] == ["plain", "batch", "ingest"]
    assert Config.model_validate(dumped) == loaded
