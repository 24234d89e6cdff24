"""Each downstream connection's guard: the peer's verified identity, and its request rates.

The listener's `GuardFactory` runs in `connection_made` (after the TLS handshake): a TLS peer whose certificate
names no SPIFFE ID of an accepted trust domain is refused there, before a byte of HTTP is read. The guard it
returns then admits each request: it stamps the peer identity on the request (`Request.identity`, read by
policies and identity-keyed rate limits) and takes a token from the connection's bucket and from the peer's
bucket (keyed by SPIFFE ID, else by address, shared by all its connections to this listener). A listener with
neither TLS nor rates has no factory: its connections do no per-request work here.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from meshbatch.config.plain.security import RequestRate
from meshbatch.core.buckets import KeyedBuckets, TokenBucket
from meshbatch.errors import ProxyError, RateLimited
from meshbatch.http.message import Request
from meshbatch.security.stats import SecurityStats
from meshbatch.security.tls import PeerRejected, verify_peer


class Refused(ProxyError):
    """The connection is refused at once (no answer): a TLS peer whose identity is not acceptable."""

    status, flag, default_reason = 403, "UAEX", "peer_refused"


def _burst(rate: RequestRate) -> float:
    return float(rate.burst if rate.burst is not None else max(1.0, rate.rps))


class PeerGuard:
    __slots__ = ("_bucket", "_key", "_keyed", "identity")

    def __init__(self, identity: str | None, bucket: TokenBucket | None, keyed: KeyedBuckets[str] | None,
                 key: str) -> None:
        self.identity = identity
        self._bucket = bucket
        self._keyed = keyed
        self._key = key

    def admit(self, request: Request) -> ProxyError | None:
        request.identity = self.identity
        now = request.received_at
        bucket = self._bucket
        if bucket is not None:
            wait = bucket.try_take(now)
            if wait:
                return RateLimited("connection_rate_limited", "too many requests on this connection",
                                   retry_after=wait)
        keyed = self._keyed
        if keyed is not None:
            wait = keyed.try_take(self._key, now)
            if wait:
                return RateLimited("identity_rate_limited", "too many requests from this peer", retry_after=wait)
        return None


class GuardFactory:
    """One per listener config; `identity_buckets` is handed over from the previous config when unchanged."""

    __slots__ = ("connection_rate", "identity_buckets", "listener", "loop", "stats", "trust_domains")

    def __init__(self, listener: str, loop: asyncio.AbstractEventLoop, stats: SecurityStats,
                 trust_domains: frozenset[str] | None, connection_rate: RequestRate | None,
                 identity_buckets: KeyedBuckets[str] | None) -> None:
        self.listener = listener
        self.loop = loop
        self.stats = stats
        self.trust_domains = trust_domains
        self.connection_rate = connection_rate
        self.identity_buckets = identity_buckets

    def __call__(self, transport: Any) -> PeerGuard | None:
        """The connection's guard (None: nothing to do per request); raises Refused for an unacceptable peer."""
        identity = None
        sslobj: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
        if sslobj is not None and self.trust_domains is not None:
            try:
                identity = verify_peer(sslobj, self.trust_domains)
            except PeerRejected as exc:
                self.stats.handshake(self.listener, exc.reason)
                raise Refused(exc.reason, str(exc)) from None
        rate = self.connection_rate
        bucket = TokenBucket(rate.rps, _burst(rate), self.loop.time()) if rate is not None else None
        keyed = self.identity_buckets
        if identity is None and bucket is None and keyed is None:
            return None
        key = identity
        if key is None:
            peer = transport.get_extra_info("peername")
            key = str(peer[0]) if isinstance(peer, tuple) else ""
        return PeerGuard(identity, bucket, keyed, key)


def identity_buckets(rate: RequestRate | None) -> KeyedBuckets[str] | None:
    return None if rate is None else KeyedBuckets(rate.rps, _burst(rate), rate.max_keys)


__all__ = ["GuardFactory", "PeerGuard", "Refused", "identity_buckets"]
