"""Checks of meaning for `pipeline:` and `ingest:` (run at load with every other check; errors carry paths)."""

from __future__ import annotations

import os
from collections.abc import Iterator

from meshbatch.config.load import Problem, did_you_mean, register_check
from meshbatch.config.model import Column, Config, IngestRoute, PipelineRoute, Route

NEEDS_EVENTS = ("validate", "filter", "transform")


def route_problems(config: Config, route: Route, path: str) -> Iterator[Problem]:
    if isinstance(route, PipelineRoute):  # a plain route has no pipeline (config.model.routes refuses the key)
        yield from pipeline_problems(route, path)
    if isinstance(route, IngestRoute):
        yield from ingest_problems(route, f"{path}.ingest")


def pipeline_problems(route: PipelineRoute, path: str) -> Iterator[Problem]:
    decoded = False
    seen: set[str] = set()
    for k, step in enumerate(route.pipeline):
        stage = step.stage
        here = f"{path}.pipeline[{k}].{stage}"
        if stage in seen and stage in ("decompress", "decode", "compress"):
            yield Problem(here, f"{stage} appears twice in this pipeline")
        seen.add(stage)
        if stage == "decode":
            decoded = True
        if stage in NEEDS_EVENTS and not decoded:
            yield Problem(here, f"{stage} works on events: put a decode stage before it")
        if step.filter is not None:
            from meshbatch.pipeline.expr_parse import ExprError
            from meshbatch.pipeline.expr_parse import parse as parse_expr

            try:
                parse_expr(step.filter.expr)
            except ExprError as exc:
                yield Problem(f"{here}.expr", str(exc))
        if step.validate_ is not None:
            from meshbatch.pipeline.stages.validate import make_validator

            try:
                make_validator(step.validate_.schema_)
            except ValueError as exc:
                yield Problem(f"{here}.schema", str(exc))
            if step.validate_.on_invalid == "dead_letter" and not isinstance(route, IngestRoute):
                yield Problem(f"{here}.on_invalid", "dead_letter needs an ingest route (it has the dead letters)")
        if step.transform is not None:
            t = step.transform
            fields = [*t.rename, *t.rename.values(), *(t.project or []), *t.drop, *t.add] + ([t.stamp] if t.stamp
                                                                                              else [])
            for name in fields:
                if not name or any(not part for part in name.split(".")):
                    yield Problem(here, f"{name!r} is not a field path (names joined by dots)")
        if stage == "compress":
            from meshbatch.ingest.sinks.base import sink_type

            to_cluster = not isinstance(route, IngestRoute) or sink_type(route) == "cluster"
            if not to_cluster:
                yield Problem(here, "compress applies to batches sent to a cluster; this route's sink is a database")


def ingest_problems(route: IngestRoute, path: str) -> Iterator[Problem]:
    from meshbatch.batching.codecs import CODECS
    from meshbatch.ingest.logs import LOGS
    from meshbatch.ingest.sinks import SINKS, sink_type

    ingest = route.ingest
    log, sink, delivery = ingest.log, ingest.sink, ingest.delivery
    if log.backend not in LOGS:
        yield Problem(f"{path}.log.backend", f"unknown log backend {log.backend!r}"
                      f"{did_you_mean(log.backend, LOGS.names())}; known: {', '.join(LOGS.names())}")
    elif (why := LOGS.unavailable(log.backend)) is not None:
        yield Problem(f"{path}.log.backend", why)
    elif ingest.ack == "delivered" and log.backend == "jetstream":
        yield Problem(f"{path}.ack", "delivered needs a log read by this process only (sqlite); with jetstream, "
                      "another replica may deliver the event")
    if log.backend != "sqlite" and log.path is not None:
        yield Problem(f"{path}.log.path", "only the sqlite backend has a path")
    kind = sink_type(route)
    if kind not in SINKS:
        yield Problem(f"{path}.sink.type", f"unknown sink {kind!r}{did_you_mean(kind, SINKS.names())}; "
                      f"known: {', '.join(SINKS.names())}")
    elif (why := SINKS.unavailable(kind)) is not None:
        yield Problem(f"{path}.sink.type", why)
    yield from _shard_problems(route, kind, f"{path}.sink")
    if kind == "postgres" and not sink.url and not sink.shards:
        yield Problem(f"{path}.sink.url", "is required for a postgres sink (postgresql://user@host:port/db)")
    if kind == "cluster":
        # grpc batches callers' gRPC calls on a batch route: an event is no gRPC call
        known = [name for name in CODECS.names() if name != "grpc"]
        if sink.codec == "grpc":
            yield Problem(f"{path}.sink.codec", "grpc batches callers' gRPC calls on a batch route; an ingest "
                          f"sink delivers events in {', '.join(known)}")
        elif sink.codec not in CODECS:
            yield Problem(f"{path}.sink.codec", f"unknown codec {sink.codec!r}"
                          f"{did_you_mean(sink.codec, known)}; known: {', '.join(known)}")
        if not sink.upstream_path.startswith("/"):
            yield Problem(f"{path}.sink.upstream_path", "must start with '/'")
    else:
        yield from _table_problems(route, f"{path}.sink")
    if kind == "sqlite" and log.backend == "sqlite":
        log_file = log.path or os.path.join("meshbatch-data", f"ingest-{route.name}.db")
        sink_file = sink.path or os.path.join("meshbatch-data", "sink.db")
        if os.path.abspath(log_file) == os.path.abspath(sink_file) and not sink.shards:
            yield Problem(f"{path}.sink.path", "the sink and the log must be different files")
        for i, shard in enumerate(sink.shards):
            if shard.path and os.path.abspath(log_file) == os.path.abspath(shard.path):
                yield Problem(f"{path}.sink.shards[{i}].path", "the sink and the log must be different files")
    if delivery.backoff_initial_ms > delivery.backoff_max_ms:
        yield Problem(f"{path}.delivery.backoff_initial_ms", "must be <= backoff_max_ms")


def _shard_problems(route: IngestRoute, kind: str, path: str) -> Iterator[Problem]:
    """A sharded database sink (meshbatch.ingest.sinks.sharded): its shards, `shard_by` and `default_shard`."""
    sink = route.ingest.sink
    if not sink.shards:
        for key in ("shard_by", "default_shard"):
            if getattr(sink, key) is not None:
                yield Problem(f"{path}.{key}", "applies only to a sharded sink (with shards)")
        return
    if kind not in ("postgres", "sqlite"):
        yield Problem(f"{path}.shards", f"shards apply to the database sinks (postgres, sqlite), not {kind}")
        return
    target = "url" if kind == "postgres" else "path"
    other = "path" if kind == "postgres" else "url"
    if getattr(sink, target):
        yield Problem(f"{path}.{target}", f"{target} and shards are mutually exclusive: one database is {target}, "
                      f"several are shards")
    if len(sink.shards) < 2:
        yield Problem(f"{path}.shards", f"needs at least 2 shards (for one database, use {target})")
    seen: dict[str, int] = {}
    for i, shard in enumerate(sink.shards):
        here = f"{path}.shards[{i}]"
        value = getattr(shard, target)
        if getattr(shard, other) is not None:
            yield Problem(f"{here}.{other}", f"a {kind} shard has a {target}, not a {other}")
        if not value:
            yield Problem(f"{here}.{target}", f"is required for a {kind} shard")
            continue
        same = os.path.abspath(value) if kind == "sqlite" else value
        if same in seen:
            yield Problem(f"{here}.{target}", f"is the same database as shards[{seen[same]}]")
        seen[same] = i
    names = sink.shard_names()
    for i, name in enumerate(names):
        if name in names[:i]:
            yield Problem(f"{path}.shards[{i}].name", f"shard name {name!r} is used twice (names decide where "
                          "keys go: each must be unique)")
    if sink.shard_by is None:
        yield Problem(f"{path}.shard_by", "is required with shards: the event field whose value picks the shard")
    elif not sink.shard_by or any(not part for part in sink.shard_by.split(".")):
        yield Problem(f"{path}.shard_by", f"{sink.shard_by!r} is not a field path (names joined by dots)")
    if sink.default_shard is not None and sink.default_shard not in names:
        yield Problem(f"{path}.default_shard", f"{sink.default_shard!r} is not a shard; shards: {', '.join(names)}")


def _table_problems(route: IngestRoute, path: str) -> Iterator[Problem]:
    from meshbatch.ingest.sinks.mapping import IDENTIFIER

    sink = route.ingest.sink
    parts = sink.table.split(".")
    if len(parts) > 2 or not all(IDENTIFIER.match(p) for p in parts):
        yield Problem(f"{path}.table", f"{sink.table!r} is not a valid table name (letters, digits, _; "
                      "optionally schema.table)")
    names: dict[str, str] = {}
    fixed = [("id_column", sink.id_column), ("received_column", sink.received_column),
             ("payload_column", sink.payload_column)]
    for key, name in fixed:
        if name is None:
            continue
        if not IDENTIFIER.match(name):
            yield Problem(f"{path}.{key}", f"{name!r} is not a valid column name")
        elif name.lower() in names:
            yield Problem(f"{path}.{key}", f"column {name!r} is also {names[name.lower()]}")
        names[name.lower()] = key
    for name, spec in sink.columns.items():
        where = f"{path}.columns.{name}"
        if not IDENTIFIER.match(name):
            yield Problem(where, f"{name!r} is not a valid column name")
        elif name.lower() in names:
            yield Problem(where, f"column {name!r} is also {names[name.lower()]}")
        names[name.lower()] = f"columns.{name}"
        field = spec.field if isinstance(spec, Column) else spec
        if not field or any(not part for part in field.split(".")):
            yield Problem(where, f"{field!r} is not a field path (names joined by dots)")



@register_check
def ingest_and_pipeline(config: Config) -> Iterator[Problem]:
    for i, lst in enumerate(config.listeners):
        for j, route in enumerate(lst.routes):
            yield from route_problems(config, route, f"listeners[{i}].routes[{j}]")


__all__ = ["ingest_and_pipeline", "ingest_problems", "pipeline_problems", "route_problems"]
