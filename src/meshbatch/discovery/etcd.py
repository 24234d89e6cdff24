"""The etcd source: endpoints are the keys under a prefix, read once and then watched.

Each key under `prefix` is one endpoint. Its value is `HOST:PORT`, or JSON `{"address": ..., "weight": ...,
"metadata": {...}}`; an empty value means the address is the rest of the key after the prefix. The source
reads the prefix (and its revision), then watches from the next revision, so no change is missed between
the two. When etcd goes away, the last set stays and the source reconnects (trying each URL in turn) with a
growing backoff, re-reading the prefix before watching again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from meshbatch.config.plain import Discovery, EndpointSpec
from meshbatch.discovery.base import COMMON_KEYS, SOURCES, Apply, SourceKind, SourceStatus
from meshbatch.discovery.entries import EntryError, parse_entry
from meshbatch.discovery.etcd_gateway import EtcdError, EtcdGateway, unb64

log = logging.getLogger("meshbatch.discovery")
BACKOFF = (0.1, 0.2, 0.5, 1.0, 2.0)


def parse_kv(prefix: bytes, key: bytes, value: bytes) -> EndpointSpec:
    text = value.decode().strip()
    if not text:
        return parse_entry(key[len(prefix):].decode(), key.decode())
    if text.startswith("{"):
        try:
            return parse_entry(orjson.loads(text), key.decode())
        except orjson.JSONDecodeError:
            raise EntryError(f"{key.decode()}: not JSON") from None
    return parse_entry(text, key.decode())


class EtcdSource:
    def __init__(self, config: Discovery, cluster: str) -> None:
        assert config.prefix is not None
        self.prefix = config.prefix.encode()
        self.cluster = cluster
        self.gateways = [EtcdGateway(url, config.timeout_ms / 1000) for url in config.urls]
        self.status = SourceStatus()
        self.state: dict[bytes, EndpointSpec] = {}
        self.revision = 0
        self.invalid: dict[bytes, str] = {}

    def _put(self, key: bytes, value: bytes) -> None:
        try:
            self.state[key] = parse_kv(self.prefix, key, value)
            self.invalid.pop(key, None)
        except EntryError as exc:
            self.state.pop(key, None)
            self.invalid[key] = str(exc)
            log.error("cluster %s: etcd key skipped: %s", self.cluster, exc)

    def _apply(self, apply: Apply) -> None:
        specs = [self.state[k] for k in sorted(self.state)]
        self.status.updates += 1
        self.status.endpoints = len(specs)
        apply(specs)

    def load(self, kvs: dict[bytes, bytes], apply: Apply) -> None:
        self.state.clear()
        self.invalid.clear()
        for key, value in kvs.items():
            self._put(key, value)
        self._apply(apply)

    def events(self, events: list[dict[str, Any]], apply: Apply) -> None:
        for event in events:
            kv = event.get("kv", {})
            key = unb64(kv.get("key", ""))
            if event.get("type") == "DELETE":
                self.state.pop(key, None)
                self.invalid.pop(key, None)
            else:
                self._put(key, unb64(kv.get("value", "")))
            self.revision = max(self.revision, int(kv.get("mod_revision", 0)))
        if events:
            self._apply(apply)

    async def run(self, apply: Apply) -> None:
        attempt = 0
        while True:
            gateway = self.gateways[attempt % len(self.gateways)]
            try:
                kvs, self.revision = await gateway.range_prefix(self.prefix)
                self.load(kvs, apply)
                self.status.last_error = ""
                attempt = 0
                async for events in gateway.watch_prefix(self.prefix, self.revision + 1):
                    self.events(events, apply)
            except (OSError, TimeoutError, EtcdError, ValueError) as exc:
                error = f"{gateway.host}:{gateway.port}: {type(exc).__name__}: {exc}"
                if error != self.status.last_error:
                    log.error("cluster %s: etcd discovery keeps the last endpoints: %s", self.cluster, error)
                self.status.failures += 1
                self.status.last_error = error
                await asyncio.sleep(BACKOFF[min(attempt, len(BACKOFF) - 1)])
                attempt += 1

    def summary(self) -> dict[str, object]:
        return {"type": "etcd", "prefix": self.prefix.decode(), "revision": self.revision,
                "invalid_keys": {k.decode(): v for k, v in self.invalid.items()}, **self.status.as_dict()}


SOURCES.register("etcd")(SourceKind(EtcdSource, required=("urls", "prefix"),
                                    accepted=COMMON_KEYS | {"urls", "prefix", "timeout_ms"}))

__all__ = ["EtcdSource", "parse_kv"]
