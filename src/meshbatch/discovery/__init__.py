"""Service discovery: named sources of a cluster's endpoint set (static, file, dns, etcd, kubernetes)."""

from meshbatch.discovery import dns, etcd, file, kubernetes, static  # noqa: F401  (register)
from meshbatch.discovery.base import SOURCES, Apply, EndpointSource, SourceKind

__all__ = ["SOURCES", "Apply", "EndpointSource", "SourceKind"]
