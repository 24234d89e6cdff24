"""The Kubernetes source's reaction to each watch event, without a server: the set, the version, errors."""

from __future__ import annotations

import pytest

from meshbatch.config.model import Discovery, EndpointSpec
from meshbatch.discovery.kubernetes import KubernetesSource
from meshbatch.discovery.kubernetes_api import ApiError, Gone
from testbed.k8s_api import endpoint, endpoint_slice, status


def source() -> tuple[KubernetesSource, list[list[EndpointSpec]]]:
    applied: list[list[EndpointSpec]] = []
    src = KubernetesSource(Discovery(type="kubernetes", service="web"), "web")
    src.publish(applied.append)  # what a first (empty) list applies
    return src, applied


def event(kind: str, obj: dict[str, object], version: int) -> dict[str, object]:
    obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(version)}}  # type: ignore[dict-item]
    return {"type": kind, "object": obj}


def test_added_modified_deleted_change_the_set_and_the_version() -> None:
    src, applied = source()
    src.on_event(event("ADDED", endpoint_slice("a", "web", [endpoint("10.0.0.1")]), 5), applied.append)
    src.on_event(event("MODIFIED", endpoint_slice("a", "web", [endpoint("10.0.0.2")]), 6), applied.append)
    src.on_event(event("MODIFIED", endpoint_slice("a", "web", [endpoint("10.0.0.2")]), 7), applied.append)
    src.on_event(event("DELETED", endpoint_slice("a", "web", []), 8), applied.append)
    assert [[e.address for e in s] for s in applied] == [[], ["10.0.0.1:80"], ["10.0.0.2:80"], []]
    assert src.resource_version == "8" and src.counts["events"] == 4  # the same set twice: applied once


def test_a_bookmark_moves_the_version_only() -> None:
    src, applied = source()
    src.on_event({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "42"}}}, applied.append)
    assert src.resource_version == "42" and len(applied) == 1 and src.counts["bookmarks"] == 1


def test_errors_in_the_stream() -> None:
    src, applied = source()
    with pytest.raises(Gone):
        src.on_event({"type": "ERROR", "object": status(410, "Expired", "too old resource version")}, applied.append)
    with pytest.raises(ApiError) as caught:
        src.on_event({"type": "ERROR", "object": status(500, "InternalError", "etcd")}, applied.append)
    assert caught.value.status == 500 and not isinstance(caught.value, Gone)
    with pytest.raises(ApiError, match="not a watch event"):
        src.on_event({"kind": "EndpointSliceList", "items": []}, applied.append)
