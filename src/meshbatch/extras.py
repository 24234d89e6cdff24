"""Optional parts and the extras that install them: a proxy pulls in only what its config uses.

`pip install meshbatch` is a plain sidecar or gateway; a part that needs a client library outside that base
names its extra, and using it without the extra installed is an error that says what to install:

    postgres  asyncpg                     the `postgres` ingest sink (and the demo's --database postgresql://)
    nats      nats-py                     the `jetstream` ingest log
    k8s       kubernetes_asyncio          the `kubernetes` discovery source
    otel      OpenTelemetry SDK, OTLP     `tracing:` (spans, exporters)
    grpc      protobuf, grpcio            gRPC batching into a service's own batch method (`batch.grpc.descriptor_set`),
                                          the consumer SDK's gRPC server
    demo      matplotlib, numpy, uvicorn  `meshbatch demo` and the plots of `meshbatch tune --plot`
    all       every extra above

`missing` answers without importing anything (`meshbatch check` reports a config's needs that way), and
`MissingExtraError` is what an import of such a part raises when its library is absent.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

EXTRAS: dict[str, tuple[str, ...]] = {
    "postgres": ("asyncpg",),
    "nats": ("nats",),
    "k8s": ("kubernetes_asyncio",),
    "otel": ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http"),
    "grpc": ("google.protobuf", "grpc"),
    "demo": ("matplotlib", "numpy", "uvicorn"),
}


class MissingExtraError(ImportError):
    """A part of meshbatch is used whose extra is not installed."""

    def __init__(self, extra: str, feature: str, module: str = "") -> None:
        self.extra = extra
        self.feature = feature
        needs = module or ", ".join(EXTRAS.get(extra, ()))
        super().__init__(f"{feature} needs {needs}, which is not installed: pip install 'meshbatch[{extra}]'",
                         name=module or None)


def install_hint(extra: str) -> str:
    return f"pip install 'meshbatch[{extra}]'"


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing
        return False


def missing(extra: str) -> list[str]:
    """The modules of `extra` that cannot be imported (empty when it is installed); nothing is imported."""
    return [module for module in EXTRAS[extra] if not _importable(module)]


def provides(extra: str, module: str) -> bool:
    """Whether `module` (e.g. the name of a ModuleNotFoundError) is one of `extra`'s, or inside one."""
    return any(module == m or module.startswith(m + ".") or m.startswith(module + ".") for m in EXTRAS[extra])


def require(extra: str, feature: str) -> None:
    """Raise MissingExtraError for `feature` unless `extra` is installed."""
    absent = missing(extra)
    if absent:
        raise MissingExtraError(extra, feature, absent[0])


def import_module(name: str, extra: str, feature: str) -> ModuleType:
    """`importlib.import_module(name)`, with a missing library of `extra` reported as MissingExtraError."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and provides(extra, exc.name):
            raise MissingExtraError(extra, feature, exc.name) from exc
        raise


__all__ = ["EXTRAS", "MissingExtraError", "import_module", "install_hint", "missing", "provides", "require"]
