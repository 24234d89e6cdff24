"""Checks of meaning for `clusters:`: balancer names that exist, and endpoints from `endpoints` or a discovery
source whose keys are checked per type."""

from __future__ import annotations

from collections.abc import Iterator

from meshbatch.config.load import Problem, did_you_mean, register_check
from meshbatch.config.model import Config
from meshbatch.discovery import SOURCES
from meshbatch.upstream.balancers import BALANCERS


@register_check
def balancer_names(config: Config) -> Iterator[Problem]:
    for i, cluster in enumerate(config.clusters):
        if cluster.lb not in BALANCERS:
            yield Problem(f"clusters[{i}].lb", f"unknown balancer {cluster.lb!r}"
                          f"{did_you_mean(cluster.lb, BALANCERS.names())}; known: {', '.join(BALANCERS.names())}")


@register_check
def cluster_discovery(config: Config) -> Iterator[Problem]:
    """Endpoints come from `endpoints` (static) or a dynamic source, whose keys are checked per type."""
    for i, cluster in enumerate(config.clusters):
        path = f"clusters[{i}]"
        discovery = cluster.discovery
        if discovery is None or discovery.type == "static":
            if not cluster.endpoints:
                yield Problem(f"{path}.endpoints", "must have at least 1 item(s)")
            continue
        if discovery.type not in SOURCES:
            yield Problem(f"{path}.discovery.type", f"unknown discovery type {discovery.type!r}"
                          f"{did_you_mean(discovery.type, SOURCES.names())}; known: {', '.join(SOURCES.names())}")
            continue
        if (why := SOURCES.unavailable(discovery.type)) is not None:
            yield Problem(f"{path}.discovery.type", why)
            continue
        kind = SOURCES.get(discovery.type)
        if cluster.endpoints:
            yield Problem(f"{path}.endpoints", f"must be empty with discovery type {discovery.type!r} "
                          "(the endpoints come from the source)")
        for key in kind.required:
            if getattr(discovery, key, None) in (None, "", []):
                yield Problem(f"{path}.discovery.{key}", f"is required for discovery type {discovery.type!r}")
        for key in sorted(discovery.model_fields_set - kind.accepted):
            yield Problem(f"{path}.discovery.{key}", f"does not apply to discovery type {discovery.type!r}")
        for key, message in kind.check(discovery):
            yield Problem(f"{path}.discovery.{key}", message)


__all__ = ["balancer_names", "cluster_discovery"]
