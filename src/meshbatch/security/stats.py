"""The security counters of the process, registered once in the metrics registry (kept across reloads)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from meshbatch.telemetry.metrics import Counter, Registry

Labels = tuple[str, ...]


class SecurityStats:
    __slots__ = ("accept_errors", "authz", "handshakes", "jwt", "reloads")

    def __init__(self, registry: Registry) -> None:
        self.handshakes = registry.counter(
            "meshbatch_tls_handshakes_total",
            "Downstream connections by listener and outcome (ok, plaintext, or why the peer was refused).",
            ["listener", "result"])
        self.authz = registry.counter(
            "meshbatch_authz_decisions_total",
            "Authorization decisions by listener, scope (listener or route name), deciding policy and result.",
            ["listener", "scope", "policy", "result"])
        self.jwt = registry.counter("meshbatch_jwt_validations_total", "JWT validations by listener and result.",
                                    ["listener", "result"])
        self.accept_errors = registry.counter(
            "meshbatch_listener_accept_errors_total",
            "Failed accept() calls of a TLS listener's socket by listener and errno (EMFILE: out of file "
            "descriptors); the listener then pauses accepting, 10 ms doubling to 1 s.",
            ["listener", "error"])
        self.reloads = registry.counter(
            "meshbatch_tls_certificate_reloads_total",
            "Certificate and JWKS file loads by file and result (a failed reload keeps the previous one).",
            ["file", "result"])

    def handshake(self, listener: str, result: str) -> None:
        self.handshakes.inc((listener, result))

    def expiry_gauge(self, registry: Registry, read: Callable[[], Iterable[tuple[Labels, float]]]) -> None:
        registry.gauge("meshbatch_tls_certificate_expiry_timestamp_seconds",
                       "Expiry (Unix time) of each loaded workload certificate, by file and SPIFFE ID.",
                       ["file", "spiffe_id"], read)


def count(counter: Counter, labels: Labels) -> None:
    counter.inc(labels)


__all__ = ["SecurityStats", "count"]
