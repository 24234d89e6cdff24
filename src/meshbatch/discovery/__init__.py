"""Service discovery: named sources of a cluster's endpoint set (static, file, dns, etcd, kubernetes).

`static` is always there; the others are imported when a config names them (meshbatch.registry).
"""

from meshbatch.discovery import static  # noqa: F401  (registers "static")
from meshbatch.discovery.base import SOURCES, Apply, EndpointSource, SourceKind

SOURCES.lazy("file", "meshbatch.discovery.file")
SOURCES.lazy("dns", "meshbatch.discovery.dns")
SOURCES.lazy("etcd", "meshbatch.discovery.etcd")
SOURCES.lazy("kubernetes", "meshbatch.discovery.kubernetes", extra="k8s")

__all__ = ["SOURCES", "Apply", "EndpointSource", "SourceKind"]
