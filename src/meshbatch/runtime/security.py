"""The security state of the running proxy, kept across reloads: certificate sources (watched files), JWT key
sets, per-identity rate buckets and counters; and what it gives each config snapshot: listener settings (the TLS
accept mode, the connection guard), JWT validators, cluster mTLS. (The checks that authenticate and authorize
each request are built from these by the route stacks: runtime/stacks/.)

A source is shared by every listener and cluster naming the same files, and kept while a config uses it; on
reload the new config's files are loaded first (bad files reject the reload), and `retain` stops watching the
ones the running config no longer names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import msgspec

from meshbatch.config import plain
from meshbatch.config.plain.security import Identity, Jwt, RequestRate
from meshbatch.core.buckets import KeyedBuckets
from meshbatch.http.server import ServerSettings
from meshbatch.http2.accept import alpn_protocols
from meshbatch.security.client import ClientTls
from meshbatch.security.guard import GuardFactory, identity_buckets
from meshbatch.security.listener import ServerTls
from meshbatch.security.stats import SecurityStats
from meshbatch.security.tls import CertSource, TlsSetupError
from meshbatch.telemetry.metrics import Registry

if TYPE_CHECKING:  # the JWT library is imported only by a config with a `jwt` block
    from meshbatch.security.tokens import JwtValidator


class Security:
    def __init__(self, loop: asyncio.AbstractEventLoop, metrics: Registry) -> None:
        self.loop = loop
        self.stats = SecurityStats(metrics)
        self.sources: dict[Identity, CertSource] = {}
        self.validators: dict[tuple[str, bytes], JwtValidator] = {}  # by listener and the spec as JSON
        self.buckets: dict[tuple[str, RequestRate], KeyedBuckets[str]] = {}
        self.default_identity: Identity | None = None
        self.stats.expiry_gauge(metrics, self._expiry)

    # sources -------------------------------------------------------------------------------------
    def source(self, identity: Identity | None) -> CertSource:
        spec = identity or self.default_identity
        if spec is None:
            raise TlsSetupError("a tls block names no identity and the config has no top-level `identity`")
        source = self.sources.get(spec)
        if source is None:
            source = CertSource(spec, self.loop, lambda file, result: self.stats.reloads.inc((file, result)))
            source.start()
            self.sources[spec] = source
        return source

    def prepare(self, config: plain.Config) -> None:
        """Load everything `config` needs (TlsSetupError when a file is unusable); called by snapshot.build."""
        self.default_identity = config.identity
        for listener in config.listeners:
            if listener.tls is not None and listener.tls.mode != "disable":
                self.source(listener.tls.identity)
            if listener.jwt is not None:
                self.validator(listener.name, listener.jwt)
        for cluster in config.clusters:
            if cluster.tls is not None and cluster.tls.mode != "disable":
                self.source(cluster.tls.identity)

    def validator(self, listener: str, spec: Jwt) -> JwtValidator:
        key = (listener, msgspec.json.encode(spec))
        validator = self.validators.get(key)
        if validator is None:
            from meshbatch.security.tokens import JwtValidator

            validator = self.validators[key] = JwtValidator(spec, listener, self.stats, self.loop)
            validator.start()
        return validator

    def retain(self, config: plain.Config) -> None:
        """Stop watching what `config` (now running) does not use."""
        identities = {config.identity} | {lst.tls.identity for lst in config.listeners if lst.tls is not None} | \
            {c.tls.identity for c in config.clusters if c.tls is not None}
        used = {i or config.identity for i in identities} - {None}
        for spec in [s for s in self.sources if s not in used]:
            self.sources.pop(spec).stop()
        jwts = {(lst.name, msgspec.json.encode(lst.jwt)) for lst in config.listeners if lst.jwt is not None}
        for key in [k for k in self.validators if k not in jwts]:
            self.validators.pop(key).stop()
        rates = {(lst.name, lst.limits.identity_rate) for lst in config.listeners}
        for rate_key in [k for k in self.buckets if k not in rates]:
            del self.buckets[rate_key]

    def close(self) -> None:
        for source in self.sources.values():
            source.stop()
        for validator in self.validators.values():
            validator.stop()

    # listeners -----------------------------------------------------------------------------------
    def server_settings(self, listener: plain.Listener, settings: ServerSettings) -> ServerSettings:
        """`settings` with the listener's TLS accept mode and connection guard (unchanged when it has neither)."""
        tls = listener.tls
        limits = listener.limits
        server_tls = None
        trust_domains = None
        if tls is not None:
            context = None
            if tls.mode != "disable":
                source = self.source(tls.identity)
                context = source.front_context(tls.min_version, tuple(alpn_protocols(listener.codec)))
                trust_domains = frozenset(tls.trust_domains or [source.loaded.trust_domain])
            server_tls = ServerTls(listener.name, tls.mode, context, tls.handshake_timeout_ms / 1000, self.stats)
        buckets = None
        if limits.identity_rate is not None:
            key = (listener.name, limits.identity_rate)
            buckets = self.buckets.get(key)
            if buckets is None:
                buckets = identity_buckets(limits.identity_rate)
                assert buckets is not None
                self.buckets[key] = buckets
        if trust_domains is None and limits.connection_rate is None and buckets is None:
            return replace(settings, tls=server_tls) if server_tls is not None else settings
        guard = GuardFactory(listener.name, self.loop, self.stats, trust_domains, limits.connection_rate, buckets)
        return replace(settings, tls=server_tls, guard=guard)

    # clusters ------------------------------------------------------------------------------------
    def client_tls(self, cluster: plain.Cluster) -> ClientTls | None:
        tls = cluster.tls
        if tls is None or tls.mode == "disable":
            return None
        source = self.source(tls.identity)
        domains = frozenset(tls.trust_domains or [source.loaded.trust_domain])
        return ClientTls(source, tls.min_version, domains, list(tls.server_ids), tls.sni)

    # state ---------------------------------------------------------------------------------------
    def _expiry(self) -> Iterable[tuple[tuple[str, ...], float]]:
        for source in self.sources.values():
            loaded = source.loaded
            yield (source.spec.cert, loaded.spiffe_id), loaded.info.not_after.timestamp()

    def summary(self) -> dict[str, Any]:
        return {"identities": [s.summary() for s in self.sources.values()],
                "jwks": [{"listener": v.listener, "file": v.spec.jwks, "issuer": v.spec.issuer}
                         for v in self.validators.values()]}




def check_tls_switch(running: dict[tuple[str, str], bool], config: plain.Config) -> None:
    """A running listener (kept by a reload: same name and address) cannot gain or lose its `tls` block: its
    socket is accepted by a different loop. `mode` may change (disable, permissive, strict) on a reload."""
    for listener in config.listeners:
        had = running.get((listener.name, listener.listen))
        if had is not None and had != (listener.tls is not None):
            raise TlsSetupError(f"listener {listener.name!r}: adding or removing its `tls` block needs a restart "
                                "(or a new listen address); to migrate without one, start with "
                                "`tls: {mode: disable}` and change the mode")


__all__ = ["Security", "check_tls_switch"]
