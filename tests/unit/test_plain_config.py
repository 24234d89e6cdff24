"""The run-time config classes (meshbatch.config.plain) against the models (meshbatch.config.model): the same
classes, the same fields in the same order, the same defaults, and for every config of the repository the same
values once the validated config crosses as JSON (what `meshbatch run` does: meshbatch.runtime.validate_child)."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import types
from typing import Any

import msgspec
import pytest
from pydantic import BaseModel

import meshbatch.config.model as models
import meshbatch.config.plain as plain
from meshbatch.config.model import Config
from tests.unit.config_corpus import corpus

ABSTRACT = {"Model", "SecModel"}  # the models' bases, no part of the file
UNIONS = {"ForwardingRoute", "PipelineRoute"}  # classes with no instance of their own: unions of the kinds here


def _model_classes() -> dict[str, type[BaseModel]]:
    out: dict[str, type[BaseModel]] = {}
    for info in pkgutil.iter_modules(models.__path__):
        module = importlib.import_module(f"meshbatch.config.model.{info.name}")
        for name, cls in vars(module).items():
            if inspect.isclass(cls) and issubclass(cls, BaseModel) and cls.__module__ == module.__name__ \
                    and name not in ABSTRACT:
                out[name] = cls
    return out


def _plain_classes() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for info in pkgutil.iter_modules(plain.__path__):
        module = importlib.import_module(f"meshbatch.config.plain.{info.name}")
        for name, value in vars(module).items():
            own = inspect.isclass(value) and issubclass(value, plain.Plain) and value.__module__ == module.__name__
            if (own and value is not plain.Plain) or (name in UNIONS and isinstance(value, types.UnionType)):
                out[name] = value
    return out


MODELS = _model_classes()
PLAIN = _plain_classes()


def _dump(model: BaseModel) -> Any:
    return model.model_dump(mode="json", by_alias=True)


def test_the_same_classes() -> None:
    assert len(MODELS) == 73
    assert sorted(PLAIN) == sorted(MODELS)
    for name in MODELS:  # in the module of the same name
        if name not in UNIONS:
            assert PLAIN[name].__module__.rpartition(".")[2] == MODELS[name].__module__.rpartition(".")[2], name


@pytest.mark.parametrize("name", sorted(set(MODELS) - UNIONS))
def test_the_same_fields_in_the_same_order(name: str) -> None:
    model, cls = MODELS[name], PLAIN[name]
    keys = [info.alias or field for field, info in model.model_fields.items()]
    tag = [cls.__struct_config__.tag_field] if cls.__struct_config__.tag_field else []
    assert tag + list(cls.__struct_encode_fields__) == keys
    attributes = [field for field in model.model_fields if field != "kind"]
    assert [f for f in cls.__struct_fields__] == attributes


@pytest.mark.parametrize("name", sorted(UNIONS))
def test_a_union_has_the_fields_of_its_model(name: str) -> None:
    fields = set(MODELS[name].model_fields) - {"kind"}
    for member in PLAIN[name].__args__:
        assert fields <= set(member.__struct_fields__)
        assert issubclass(MODELS[member.__name__], MODELS[name])


# The fields a model requires, for the defaults test: the least each needs.
REQUIRED: dict[str, dict[str, Any]] = {
    "BucketBy": {"boundaries": [10.0]}, "PadToPreferred": {"item": {}}, "EndpointSpec": {"address": "a:1"},
    "Cluster": {"name": "c"}, "Column": {"field": "f"}, "RateLimit": {"rate": 1.0},
    "FaultDelay": {"fixed_ms": 5}, "Mirror": {"cluster": "m"}, "WeightedCluster": {"cluster": "w", "weight": 1},
    "Listener": {"name": "l", "listen": "127.0.0.1:1"}, "Validate": {"schema": {}}, "Filter": {"expr": "true"},
    "Config": {"listeners": [{"name": "l", "listen": "127.0.0.1:1"}]}, "PlainRoute": {"name": "r"},
    "BatchRoute": {"name": "r"}, "IngestRoute": {"name": "r"}, "Route": {"name": "r", "kind": "plain"},
    "Identity": {"cert": "c", "key": "k", "ca": "a"}, "From": {"source": {}}, "To": {"operation": {}},
    "Condition": {"key": "source.ip", "values": ["1.2.3.4"]}, "Policy": {"name": "p"},
    "Jwt": {"issuer": "i", "jwks": "j"}, "RequestRate": {"rps": 1.0}, "HeaderMatch": {"name": "h"},
    "Fault": {"from_headers": True}, "Adaptive": {"target_p99_ms": 5.0}, "Step": {"decode": {}},
}


@pytest.mark.parametrize("name", sorted(set(MODELS) - UNIONS - {"Route"}))
def test_the_same_defaults(name: str) -> None:
    given = REQUIRED.get(name, {})
    model = MODELS[name].model_validate(given)
    built = msgspec.convert(given, PLAIN[name])
    assert json.dumps(msgspec.to_builtins(built)) == json.dumps(_dump(model))


# Every class the corpus may lack, with values other than the defaults.
RICH = {
    "identity": {"cert": "/c.pem", "key": "/k.pem", "ca": "/ca.pem", "trust_domain": "example.org"},
    "listeners": [{
        "name": "edge", "listen": "127.0.0.1:1", "edge": True,
        "tls": {"mode": "permissive", "trust_domains": ["example.org"]},
        "jwt": {"issuer": "me", "jwks": "/jwks.json", "audiences": ["a"], "algorithms": ["RS256"]},
        "limits": {"connection_rate": {"rps": 10}, "identity_rate": {"rps": 5, "burst": 7}},
        "policies": [{"name": "p", "action": "deny", "rules": [
            {"from": [{"source": {"principals": ["spiffe://example.org/*"], "ip_blocks": ["10.0.0.0/8"]}}],
             "to": [{"operation": {"methods": ["get"], "paths": ["/x*"]}}],
             "when": [{"key": "request.headers[x-a]", "values": ["1"]}]}]}],
        "routes": [
            {"name": "b", "match": {"path_prefix": "/b", "headers": [{"name": "x-t", "prefix": "a"}]},
             "cluster": "c", "adaptive_concurrency": {"min_concurrency": 2},
             "fault": {"delay": {"fixed_ms": 3, "percent": 5}, "abort": {"status": 500, "percent": 1}},
             "batch": {"max_items": 8, "key": ["header:x-t"], "max_in_flight": {"auto": {"min": 2, "max": 9}},
                       "fairness": {"weights": {"a*": 2}}, "cost": "bytes", "max_cost": 1000,
                       "bucket_by": {"boundaries": [10, 100], "max_hold_ms": [1, 2, 3]},
                       "preferred_sizes": [4, 8], "pad_to_preferred": {"item": {"pad": True}},
                       "adaptive": {"canary": 0.1, "candidate": {"min_wait_ms": 1}}},
             "pipeline": [{"decompress": None}, {"decode": {"format": "json"}}, {"compress": {"level": 3}}]},
            {"name": "b2", "cluster": "c", "batch": {"adaptive": {"canary": 0.2, "sweep": {"min_batches": 60}},
                                                      "max_in_flight": "auto"}},
            {"name": "i", "ingest": {"sink": {"type": "sqlite", "shards": ["/a.db", {"path": "/b.db", "name": "b"}],
                                              "shard_by": "k", "columns": {"k": {"field": "k", "type": "bigint"}}}},
             "batch": {"max_items": 5}},
        ]}],
    "clusters": [{"name": "c", "endpoints": ["127.0.0.1:2", {"address": "127.0.0.1:3", "weight": 2,
                                                              "metadata": {"v": "1"}}],
                  "tls": {"server_ids": ["spiffe://example.org/ns/a/sa/b"], "sni": "c"}}],
}


def _cases() -> list[tuple[str, Config]]:
    return [("RICH", Config.model_validate(RICH)), *corpus()]


def test_the_corpus_covers_every_class() -> None:
    seen: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, BaseModel):
            seen.add(type(value).__name__)
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)

    cases = _cases()
    assert len(cases) >= 30
    for _, config in cases:
        walk(config)
    assert set(MODELS) - UNIONS - {"Route"} - seen == set()


def test_every_config_of_the_repository_has_the_same_values_in_both_forms() -> None:
    for where, config in _cases():
        tree = plain.decode(config.model_dump_json(by_alias=True))
        assert isinstance(tree, plain.Config)
        # the same data, keys in the same order (what /config_dump shows)
        assert json.dumps(plain.to_data(tree)) == json.dumps(_dump(config)), where
        for lst, model_lst in zip(tree.listeners, config.listeners, strict=True):
            for route, model_route in zip(lst.routes, model_lst.routes, strict=True):
                assert type(route).__name__ == type(model_route).__name__ and route.kind == model_route.kind
                if isinstance(route, plain.BatchRoute):
                    assert route.batch.in_flight_cap == model_route.batch.in_flight_cap
                    assert [s.stage for s in route.pipeline] == [s.stage for s in model_route.pipeline]
                for mine, theirs in zip(route.rate_limit, model_route.rate_limit, strict=True):
                    assert mine.label == theirs.label


def test_methods_agree() -> None:
    check = models.HealthCheck(expected_statuses=[200, "300-399"])
    mine = plain.HealthCheck(expected_statuses=[200, "300-399"])
    assert [mine.expects(s) for s in (200, 201, 302, 404)] == [check.expects(s) for s in (200, 201, 302, 404)]
    sink = models.Sink(shards=[{"path": "/a"}, {"path": "/b", "name": "x"}])
    assert plain.Sink(shards=[plain.Shard(path="/a"), plain.Shard(path="/b", name="x")]).shard_names() \
        == sink.shard_names() == ["0", "x"]
    assert plain.GrpcBatch().envelope and not plain.GrpcBatch(descriptor_set="/d.pb").envelope
    assert plain.Step(filter=plain.Filter(expr="x")).stage == "filter"


def test_the_constants_agree() -> None:
    for name in ("COLUMN_TYPES", "ENCODINGS", "ENVELOPE_METHOD", "METHODS", "RETRY_CONDITIONS", "STAGES"):
        assert getattr(plain, name) == getattr(models, name), name
    from meshbatch.config.model import batch, layers, security

    assert plain.BLAME_STATUSES == batch.BLAME_STATUSES
    assert plain.GRPC_RETRY_CONDITIONS == layers.GRPC_RETRY_CONDITIONS
    from meshbatch.config.plain import security as plain_security

    assert plain_security.TLS_MODES == security.TLS_MODES and plain_security.JWT_ALGORITHMS == security.JWT_ALGORITHMS


def test_a_copy_with_changes_and_equality() -> None:
    route = plain.PlainRoute(name="r", cluster="c")
    other = msgspec.structs.replace(route, cluster="d")
    assert other.cluster == "d" and route.cluster == "c" and other != route
    assert msgspec.structs.replace(other, cluster="c") == route
    with pytest.raises(AttributeError):
        route.cluster = "x"  # type: ignore[misc]


SECRETIVE = {
    "admin": {"token": "s3cret-token-0123456789"},
    "tracing": {"endpoint": "https://user:pw@otel:4318/v1/traces", "headers": {"authorization": "Bearer abc"}},
    "listeners": [{"name": "l", "listen": "127.0.0.1:1", "routes": [
        {"name": "i", "ingest": {"log": {"backend": "jetstream", "url": "nats://tok@nats:4222"},
                                 "sink": {"type": "postgres", "url": "postgresql://u:pw@db/x",
                                          "shards": ["postgresql://u:pw@a/x", "postgresql://u:pw@b/x"],
                                          "shard_by": "k"}}}]}],
    "clusters": [{"name": "c", "discovery": {"type": "etcd", "urls": ["http://u:pw@etcd:2379"], "prefix": "/c"}}],
}


def test_the_same_secrets_are_marked() -> None:
    from meshbatch.config.redact import model_fields, secret_kind

    marked = {(model.__name__, name): secret_kind(model, name) for model, name, _ in model_fields(Config)
              if secret_kind(model, name) is not None}
    mine = {(name, field): kind for name, cls in PLAIN.items() if name not in UNIONS
            for field, kind in cls.SECRETS.items()}
    assert mine == marked


def test_the_config_dump_is_the_same_for_both_forms() -> None:
    from meshbatch.config.redact import redact_config

    for where, config in [("SECRETIVE", Config.model_validate(SECRETIVE)), *_cases()]:
        tree = plain.decode(config.model_dump_json(by_alias=True))
        assert json.dumps(redact_config(tree)) == json.dumps(redact_config(config)), where
    shown = json.dumps(redact_config(plain.decode(Config.model_validate(SECRETIVE).model_dump_json(by_alias=True))))
    assert "pw" not in shown and "s3cret" not in shown and "abc" not in shown and "tok@" not in shown
