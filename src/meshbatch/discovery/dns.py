"""The DNS source: A/AAAA (with a configured port) or SRV records, re-resolved when their TTL runs out.

This is how a Kubernetes headless Service is found: its name resolves to one A record per ready pod, and
`_PORT._tcp.NAME` to SRV records that carry the port too. SRV: only the lowest priority is used; the SRV
weight becomes the endpoint weight (clamped to 1..1000). A name that does not exist (NXDOMAIN) or has no such
record means "no endpoints"; a timeout or a server failure keeps the last set and retries sooner.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver
from dns.rdtypes.IN.SRV import SRV

from meshbatch.config.plain import Discovery, EndpointSpec
from meshbatch.discovery.base import COMMON_KEYS, SOURCES, Apply, SourceKind, SourceStatus
from meshbatch.discovery.entries import unique

if TYPE_CHECKING:
    from meshbatch.config.model import Discovery as DiscoveryModel

log = logging.getLogger("meshbatch.discovery")
DEFAULT_REFRESH_MS = 5000
MIN_TTL = 1.0
RETRY = 1.0


def endpoint_address(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def make_resolver(config: Discovery) -> dns.asyncresolver.Resolver:
    resolver = dns.asyncresolver.Resolver(configure=not config.nameservers)
    if config.nameservers:
        servers: list[str | dns.nameserver.Nameserver] = []
        for item in config.nameservers:
            host, sep, port = item.rpartition(":")
            if sep and port.isdigit() and (host.count(":") == 0 or host.startswith("[")):
                servers.append(dns.nameserver.Do53Nameserver(host.strip("[]"), int(port)))
            else:
                servers.append(dns.nameserver.Do53Nameserver(item.strip("[]"), 53))
        resolver.nameservers = servers
    resolver.lifetime = config.timeout_ms / 1000
    resolver.cache = None
    return resolver


class DnsSource:
    def __init__(self, config: Discovery, cluster: str) -> None:
        assert config.name is not None
        self.config = config
        self.cluster = cluster
        self.name = config.name
        self.refresh = (config.refresh_ms or DEFAULT_REFRESH_MS) / 1000
        self.resolver = make_resolver(config)
        self.status = SourceStatus()
        self.next_in = 0.0

    async def _lookup(self, name: str, rdtype: str) -> tuple[list[str], float | None, dns.resolver.Answer | None]:
        """Addresses (or rdata texts) and the TTL; ([], None) when the name or the record does not exist."""
        try:
            answer = await self.resolver.resolve(name, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return [], None, None
        assert answer.rrset is not None
        return [r.to_text() for r in answer], float(answer.rrset.ttl), answer

    async def _addresses(self, name: str, record: str) -> tuple[list[str], float | None]:
        kinds = ["A", "AAAA"] if record == "ALL" else [record]
        ips: list[str] = []
        ttls: list[float] = []
        for kind in kinds:
            found, ttl, _ = await self._lookup(name, kind)
            ips += found
            if ttl is not None:
                ttls.append(ttl)
        return ips, min(ttls) if ttls else None

    async def resolve(self) -> tuple[list[EndpointSpec], float | None]:
        """The endpoint set now, and the TTL to respect (None: nothing was found)."""
        config = self.config
        if config.record != "SRV":
            assert config.port is not None
            ips, ttl = await self._addresses(self.name, config.record)
            return unique([EndpointSpec(address=endpoint_address(ip, config.port)) for ip in ips]), ttl
        _, ttl, answer = await self._lookup(self.name, "SRV")
        if answer is None:
            return [], None
        records = [r for r in answer if isinstance(r, SRV)]
        if not records:
            return [], ttl
        best = min(r.priority for r in records)
        glue: dict[str, list[str]] = {}
        for rrset in answer.response.additional:
            if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                glue.setdefault(rrset.name.to_text(), []).extend(r.to_text() for r in rrset)
        specs = []
        for record in records:
            if record.priority != best:
                continue
            target = record.target.to_text()
            ips = glue.get(target, [])
            if not ips:
                ips, target_ttl = await self._addresses(target, "A")
                if target_ttl is not None and ttl is not None:
                    ttl = min(ttl, target_ttl)
            weight = min(1000, max(1, record.weight))
            specs += [EndpointSpec(address=endpoint_address(ip, record.port), weight=weight,
                                   metadata={"srv_target": target.rstrip(".")}) for ip in ips]
        return unique(specs), ttl

    async def run(self, apply: Apply) -> None:
        while True:
            try:
                specs, ttl = await self.resolve()
            except (dns.exception.DNSException, OSError) as exc:
                error = f"{self.name}: {type(exc).__name__}: {exc}"
                if error != self.status.last_error:
                    log.error("cluster %s: DNS discovery keeps the last endpoints: %s", self.cluster, error)
                self.status.failures += 1
                self.status.last_error = error
                self.next_in = min(RETRY, self.refresh)
            else:
                self.status.updates += 1
                self.status.last_error = ""
                self.status.endpoints = len(specs)
                apply(specs)
                if self.config.respect_ttl and ttl is not None:
                    self.next_in = max(ttl, MIN_TTL)
                else:
                    self.next_in = self.refresh
            await asyncio.sleep(self.next_in)

    def summary(self) -> dict[str, object]:
        return {"type": "dns", "name": self.name, "record": self.config.record,
                "next_resolve_in_s": self.next_in, **self.status.as_dict()}


def _check(config: DiscoveryModel) -> list[tuple[str, str]]:
    if config.record != "SRV" and config.port is None:
        return [("port", f"is required for record {config.record} (SRV records carry their own port)")]
    if config.record == "SRV" and config.port is not None:
        return [("port", "does not apply to SRV records (they carry their own port)")]
    return []


SOURCES.register("dns")(SourceKind(
    DnsSource,
    required=("name",),
    check=_check,
    accepted=COMMON_KEYS | {"name", "record", "port", "nameservers", "respect_ttl", "refresh_ms", "timeout_ms"},
))

__all__ = ["DnsSource", "endpoint_address", "make_resolver"]
