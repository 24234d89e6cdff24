"""Checks of meaning for `batch:`: codec names that exist, and a gRPC batch method that fits its descriptors."""

from __future__ import annotations

from collections.abc import Iterator

from meshbatch import extras
from meshbatch.config.load import Problem, did_you_mean, register_check
from meshbatch.config.model import BatchRoute, Config, GrpcBatch
from meshbatch.grpc import descriptors


@register_check
def codec_names(config: Config) -> Iterator[Problem]:
    if not any(isinstance(route, BatchRoute) for lst in config.listeners for route in lst.routes):
        return  # (the codecs are imported by a config with a batch route, not by a plain one)
    from meshbatch.batching.codecs import CODECS

    for i, lst in enumerate(config.listeners):
        for j, route in enumerate(lst.routes):
            if isinstance(route, BatchRoute) and route.batch.codec not in CODECS:
                yield Problem(f"listeners[{i}].routes[{j}].batch.codec",
                              f"unknown codec {route.batch.codec!r}{did_you_mean(route.batch.codec, CODECS.names())}"
                              f"; known: {', '.join(CODECS.names())}")


def grpc_problems(grpc: GrpcBatch, path: str, route_path: str | None) -> Iterator[Problem]:
    """A batch method from descriptors: the file read, every name found and of the right type; the route's
    exact `match.path`, when it has one, a unary method whose messages are the batch method's items and results."""
    if grpc.descriptor_set is None or grpc.items_field is None or grpc.results_field is None:
        return
    if extras.missing("grpc"):
        yield Problem(f"{path}.descriptor_set", f"batching with protobuf descriptors needs the 'grpc' extra: "
                                                f"{extras.install_hint('grpc')}")
        return
    try:
        shape = descriptors.load(grpc.descriptor_set, grpc.batch_method, grpc.items_field, grpc.results_field,
                                 grpc.statuses_field)
    except descriptors.DescriptorError as exc:
        yield Problem(f"{path}.{exc.key}", str(exc))
        return
    if route_path is not None:
        problem = shape.unary_problem(route_path)
        if problem is not None:
            yield Problem(f"{path.rpartition('.batch')[0]}.match.path", problem)


@register_check
def grpc_methods(config: Config) -> Iterator[Problem]:
    for i, lst in enumerate(config.listeners):
        for j, route in enumerate(lst.routes):
            if isinstance(route, BatchRoute) and route.batch.grpc is not None:
                if route.pipeline:  # its steps read the body as text, JSON or a compressed document
                    yield Problem(f"listeners[{i}].routes[{j}].pipeline",
                                  "a gRPC batch route carries protobuf messages as they are: no pipeline steps")
                yield from grpc_problems(route.batch.grpc, f"listeners[{i}].routes[{j}].batch.grpc",
                                         route.match.path)


__all__ = ["codec_names", "grpc_methods", "grpc_problems"]
