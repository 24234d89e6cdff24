"""The config loader: YAML -> frozen typed Config, or every problem at once, each with its path."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest
from pydantic import ValidationError

from meshbatch.config import Config, ConfigError, load, parse
from meshbatch.config.model import BatchRoute, PlainRoute

GOOD = """
admin:
  listen: 127.0.0.1:9901
listeners:
  - name: ingress
    listen: 0.0.0.0:8080
    routes:
      - name: orders
        match: {host: service, path_prefix: /orders, methods: [POST]}
        cluster: consumer
        timeout_ms: 2000
        batch:
          max_items: 64
          max_wait_ms: 5
          min_wait_ms: 0
          max_bytes: 1048576
          codec: json-array
          upstream_path: /orders/batch
          max_in_flight: 4
          max_queue: 10000
          key: [header:x-tenant]
      - name: rest
        cluster: consumer
clusters:
  - name: consumer
    endpoints: [127.0.0.1:9000, 127.0.0.1:9001]
    lb: round_robin
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(dedent(text))
    return [str(p) for p in info.value.problems]


def test_the_contract_example_loads() -> None:
    config = parse(GOOD)
    assert isinstance(config, Config)
    listener = config.listeners[0]
    assert (listener.name, listener.listen) == ("ingress", "0.0.0.0:8080")
    orders = listener.routes[0]
    assert orders.match.methods == ["POST"]
    assert isinstance(orders, BatchRoute) and orders.kind == "batch"
    assert orders.batch.max_items == 64 and orders.batch.key == ["header:x-tenant"]
    assert isinstance(listener.routes[1], PlainRoute) and listener.routes[1].kind == "plain"
    assert config.clusters[0].endpoints == ["127.0.0.1:9000", "127.0.0.1:9001"]


def test_defaults() -> None:
    config = parse("listeners: [{name: l, listen: '127.0.0.1:0'}]")
    assert config.admin is not None and config.admin.listen == "127.0.0.1:9901"
    assert config.listeners[0].routes == []
    limits = config.listeners[0].limits
    assert (limits.max_header_bytes, limits.max_body_bytes) == (65_536, 8_388_608)
    assert (limits.header_timeout_ms, limits.idle_timeout_ms) == (10_000, 60_000)
    assert config.drain_timeout_ms == 15_000


def test_admin_can_be_turned_off() -> None:
    assert parse("admin: null\nlisteners: [{name: l, listen: '127.0.0.1:0'}]").admin is None


def test_config_is_frozen() -> None:
    config = parse(GOOD)
    with pytest.raises(ValidationError):
        config.listeners[0].routes[0].timeout_ms = 5  # type: ignore[misc]


def test_every_error_is_reported_at_once_with_its_path() -> None:
    found = problems("""
        listeners:
          - name: ingress
            listen: 127.0.0.1:0
            routes:
              - name: orders
                cluster: consumer
                batch: {max_items: 0, max_itmes: 3}
              - name: rest
                cluster: consumr
        clusters:
          - name: consumer
            endpoints: [127.0.0.1:9000]
        """)
    assert found == [
        "listeners[0].routes[0].batch.max_items: must be >= 1",
        "listeners[0].routes[0].batch.max_itmes: unknown key; did you mean 'max_items'?",
        "listeners[0].routes[1].cluster: no cluster named 'consumr'; did you mean 'consumer'?",
    ]


def test_many_shape_errors_together() -> None:
    found = problems("""
        listeners:
          - name: ''
            listen: 127.0.0.1:0
            limits: {max_header_bytes: 10, header_timeout_ms: 0, max_conections: 5}
            routes:
              - name: r
                cluster: c
                timeout_ms: -1
                match: {path: orders, methods: [FETCH], host: 'a.*.com'}
        clusters:
          - {name: c, endpoints: []}
        drain_timeout_ms: 0
        """)
    assert sorted(found) == sorted([
        "listeners[0].name: must not be empty",
        "listeners[0].limits.max_header_bytes: must be >= 256",
        "listeners[0].limits.header_timeout_ms: must be >= 1",
        "listeners[0].limits.max_conections: unknown key; did you mean 'max_connections'?",
        "listeners[0].routes[0].match.host: host 'a.*.com': use an exact name or '*.suffix'",
        "listeners[0].routes[0].match.path: must start with '/'",
        "listeners[0].routes[0].match.methods: unknown method 'FETCH'; expected one of GET, HEAD, POST, PUT, "
        "PATCH, DELETE, OPTIONS, TRACE, CONNECT",
        "listeners[0].routes[0].timeout_ms: must be >= 1",
        "clusters[0].endpoints: must have at least 1 item(s)",
        "drain_timeout_ms: must be >= 1",
    ])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("listenerz: []\nlisteners: [{name: l, listen: '127.0.0.1:0'}]",
         "listenerz: unknown key; did you mean 'listeners'?"),
        ("listeners: [{name: l, listen: '127.0.0.1:0', routes: [{name: r, cluster: c, matsh: {}}]}]\n"
         "clusters: [{name: c, endpoints: ['127.0.0.1:1']}]",
         "listeners[0].routes[0].matsh: unknown key; did you mean 'match'?"),
        ("listeners: [{name: l, listen: '127.0.0.1:0'}]\n"
         "clusters: [{name: c, endpoints: [{address: '127.0.0.1:1', weigth: 2}]}]",
         "clusters[0].endpoints[0].weigth: unknown key; did you mean 'weight'?"),
        ("listeners: [{name: l, listen: '127.0.0.1:0'}]\nadmin: {lsten: '127.0.0.1:0'}",
         "admin.lsten: unknown key; did you mean 'listen'?"),
        ("listeners: [{name: l, listen: '127.0.0.1:0', frobnicate: 1}]",
         "listeners[0].frobnicate: unknown key"),
    ],
)
def test_unknown_keys_with_hints(text: str, expected: str) -> None:
    assert problems(text) == [expected]


def test_misspelt_required_key_is_both_missing_and_unknown() -> None:
    assert problems("listeners: [{name: l, lisen: '127.0.0.1:0'}]") == [
        "listeners[0].listen: is required",
        "listeners[0].lisen: unknown key; did you mean 'listen'?",
    ]


def test_unknown_key_in_a_union_arm_reports_only_that_key() -> None:
    # An endpoint written as a mapping is the {address, weight} form: no "must be a string" noise.
    found = problems("listeners: [{name: l, listen: '127.0.0.1:0'}]\n"
                     "clusters: [{name: c, endpoints: [{address: '127.0.0.1:1', wieght: 2}]}]")
    assert found == ["clusters[0].endpoints[0].wieght: unknown key; did you mean 'weight'?"]


def test_yaml_syntax_error_has_line_and_column() -> None:
    found = problems("listeners:\n  - name: [l\n    listen: x\n")
    assert len(found) == 1
    assert found[0].startswith("line 3, column ")


def test_tab_indentation_is_a_syntax_error_with_line() -> None:
    found = problems("listeners:\n\t- name: l\n")
    assert len(found) == 1 and found[0].startswith("line 2, column 1: ")


def test_duplicate_keys_are_errors() -> None:
    found = problems("listeners: [{name: l, listen: '127.0.0.1:0'}]\nclusters: []\nclusters: []\n")
    assert found == ["line 3, column 1: duplicate key 'clusters' (first at line 2)"]


def test_nested_duplicate_keys_are_errors() -> None:
    found = problems("""
        listeners:
          - name: l
            listen: 127.0.0.1:0
            name: m
        """)
    assert found == ["line 5, column 5: duplicate key 'name' (first at line 3)"]


@pytest.mark.parametrize("text", ["", "- 1\n- 2", "just a string", "42"])
def test_top_level_must_be_a_mapping(text: str) -> None:
    assert problems(text) == ["the config must be a YAML mapping at the top level"]


def test_listeners_are_required() -> None:
    assert problems("clusters: []") == ["listeners: is required"]
    assert problems("listeners: []") == ["listeners: must have at least 1 item(s)"]


def test_unknown_cluster_reference_with_hint() -> None:
    found = problems("""
        listeners:
          - name: l
            listen: 127.0.0.1:0
            routes:
              - {name: a, cluster: orders-v2}
              - {name: b, cluster: zzz}
        clusters: [{name: orders-v1, endpoints: ['127.0.0.1:1']}]
        """)
    assert found == [
        "listeners[0].routes[0].cluster: no cluster named 'orders-v2'; did you mean 'orders-v1'?",
        "listeners[0].routes[1].cluster: no cluster named 'zzz'",
    ]


def test_duplicate_names() -> None:
    found = problems("""
        listeners:
          - name: l
            listen: 127.0.0.1:0
            routes: [{name: r, cluster: c}]
          - name: l
            listen: 127.0.0.1:0
            routes: [{name: r, cluster: c}]
        clusters:
          - {name: c, endpoints: ['127.0.0.1:1']}
          - {name: c, endpoints: ['127.0.0.1:2']}
        """)
    assert found == [
        "listeners[1].name: duplicate listener name 'l' (first at listeners[0].name)",
        "clusters[1].name: duplicate cluster name 'c' (first at clusters[0].name)",
        "listeners[1].routes[0].name: duplicate route name 'r' (first at listeners[0].routes[0].name)",
    ]


def test_duplicate_listen_addresses_but_port_zero_may_repeat() -> None:
    found = problems("""
        admin: {listen: '127.0.0.1:9901'}
        listeners:
          - {name: a, listen: '127.0.0.1:8080'}
          - {name: b, listen: '127.0.0.1:8080'}
          - {name: c, listen: '127.0.0.1:9901'}
          - {name: d, listen: '127.0.0.1:0'}
          - {name: e, listen: '127.0.0.1:0'}
        """)
    assert found == [
        "listeners[1].listen: duplicate listen address '127.0.0.1:8080' (first at listeners[0].listen)",
        "listeners[2].listen: duplicate listen address '127.0.0.1:9901' (first at admin.listen)",
    ]


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        ("localhost", "must be HOST:PORT, e.g. 127.0.0.1:8080"),
        (":8080", "must be HOST:PORT, e.g. 127.0.0.1:8080"),
        ("127.0.0.1:", "port must be a number from 0 to 65535"),
        ("127.0.0.1:http", "port must be a number from 0 to 65535"),
        ("127.0.0.1:65536", "port must be a number from 0 to 65535"),
        ("[::1:8080", "an IPv6 host must be in brackets, e.g. [::1]:8080"),
    ],
)
def test_bad_listen_addresses(listen: str, message: str) -> None:
    assert problems(f"listeners: [{{name: l, listen: '{listen}'}}]") == [f"listeners[0].listen: {message}"]


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "0.0.0.0:8080", "[::1]:8080", "localhost:65535"])
def test_good_listen_addresses(listen: str) -> None:
    assert parse(f"listeners: [{{name: l, listen: '{listen}'}}]").listeners[0].listen == listen


def test_bad_endpoint_address() -> None:
    found = problems("listeners: [{name: l, listen: '127.0.0.1:0'}]\nclusters: [{name: c, endpoints: [nowhere]}]")
    assert found == ["clusters[0].endpoints: must be HOST:PORT, e.g. 127.0.0.1:8080"]


def test_unknown_balancer_and_codec_with_hints_next_to_shape_errors() -> None:
    found = problems("""
        listeners:
          - name: l
            listen: 127.0.0.1:0
            routes:
              - name: r
                cluster: c
                timeout_ms: 0
                batch: {codec: json-aray}
        clusters: [{name: c, endpoints: ['127.0.0.1:1'], lb: round_robbin}]
        """)
    assert found[0] == "listeners[0].routes[0].timeout_ms: must be >= 1"
    assert "clusters[0].lb: unknown balancer 'round_robbin'; did you mean 'round_robin'?" in found[1]
    assert "listeners[0].routes[0].batch.codec: unknown codec 'json-aray'; did you mean 'json-array'?" in found[2]
    assert len(found) == 3


def test_header_match_takes_one_kind() -> None:
    found = problems("""
        listeners:
          - name: l
            listen: 127.0.0.1:0
            routes:
              - name: r
                cluster: c
                match: {headers: [{name: x, exact: a, prefix: b}]}
        clusters: [{name: c, endpoints: ['127.0.0.1:1']}]
        """)
    assert found == ["listeners[0].routes[0].match.headers[0]: set only one of exact, prefix, present "
                     "(got exact, prefix)"]


def test_path_and_prefix_are_exclusive() -> None:
    found = problems("""
        listeners:
          - name: l
            listen: 127.0.0.1:0
            routes: [{name: r, cluster: c, match: {path: /a, path_prefix: /b}}]
        clusters: [{name: c, endpoints: ['127.0.0.1:1']}]
        """)
    assert found == ["listeners[0].routes[0].match: set path (exact) or path_prefix, not both"]


def test_batch_checks() -> None:
    found = problems("""
        listeners:
          - name: l
            listen: 127.0.0.1:0
            routes:
              - {name: r, cluster: c, batch: {min_wait_ms: 10, max_wait_ms: 5}}
              - {name: s, cluster: c, batch: {key: ['cookie:x'], upstream_path: batch}}
        clusters: [{name: c, endpoints: ['127.0.0.1:1']}]
        """)
    assert found == [
        "listeners[0].routes[0].batch: min_wait_ms must be <= max_wait_ms",
        "listeners[0].routes[1].batch.upstream_path: must start with '/'",
        "listeners[0].routes[1].batch.key: 'cookie:x': a key part is 'header:NAME' or 'query:NAME'",
    ]


def test_wrong_types() -> None:
    found = problems("""
        listeners:
          - {name: l, listen: 5, routes: x}
        clusters: [{name: c, endpoints: '127.0.0.1:1'}]
        """)
    assert found == [
        "listeners[0].listen: must be HOST:PORT, e.g. 0.0.0.0:5 (a port alone is not an address)",
        "listeners[0].routes: must be a valid list",
        "clusters[0].endpoints: must be a valid list",
    ]


def test_load_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    assert load(path).listeners[0].name == "ingress"


def test_load_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "missing.yaml")
    (problem,) = info.value.problems
    assert "cannot read" in str(problem) and "missing.yaml" in str(problem)


def test_error_message_lists_every_problem() -> None:
    with pytest.raises(ConfigError) as info:
        parse("listeners: [{name: '', listen: x}]")
    assert str(info.value).splitlines() == [
        "listeners[0].name: must not be empty",
        "listeners[0].listen: must be HOST:PORT, e.g. 127.0.0.1:8080",
    ]


def test_route_and_policy_paths_must_be_in_normal_form() -> None:
    """A request path is normalised before routing and policies (docs/data-plane.md#paths): a route or policy path
    written in another form would silently never match, so `check` refuses it and names the form to write."""
    text = dedent("""
        listeners:
          - name: l
            listen: 127.0.0.1:0
            routes:
              - {name: a, match: {path_prefix: /api//v1}, cluster: c}
              - {name: b, match: {path: /%61dmin}, cluster: c}
              - {name: d, match: {path: /files/a%20b}, cluster: c}
              - name: e
                match: {path_prefix: /x/}
                cluster: c
                policies:
                  - {name: p, action: DENY, rules: [{to: [{operation: {paths: [/x/../admin, /a/.*, /ok/*],
                                                                        not_paths: [//y/*]}}]}]}
        clusters: [{name: c, endpoints: ["127.0.0.1:1"]}]
    """)
    with pytest.raises(ConfigError) as caught:
        parse(text)
    problems = {p.path: p.message for p in caught.value.problems}
    assert set(problems) == {
        "listeners[0].routes[0].match.path_prefix", "listeners[0].routes[1].match.path",
        "listeners[0].routes[3].policies[0].rules[0].to[0].operation.paths[0]",
        "listeners[0].routes[3].policies[0].rules[0].to[0].operation.not_paths[0]"}
    assert problems["listeners[0].routes[1].match.path"].endswith("write '/admin'")
    assert "'/api/v1'" in problems["listeners[0].routes[0].match.path_prefix"]


def test_paths_are_not_judged_where_normalisation_is_off() -> None:
    parse(dedent("""
        listeners:
          - name: l
            listen: 127.0.0.1:0
            path_normalization: {normalize: false, merge_slashes: false}
            routes: [{name: a, match: {path_prefix: /api//v1}, cluster: c}]
        clusters: [{name: c, endpoints: ["127.0.0.1:1"]}]
    """))
