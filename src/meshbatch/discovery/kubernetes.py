"""The Kubernetes source: a Service's endpoints from its EndpointSlices, listed once and then watched.

The source lists the Service's slices (label `kubernetes.io/service-name`) and watches them from the list's
resourceVersion, with bookmarks so that the version it would resume from stays fresh. A watch stream that
ends (the server's timeout, a restarted API server) is opened again from the last version seen, so no change is
missed and nothing is listed again; a version the server no longer has (410 Gone) means listing again. When
the API server cannot be reached or refuses, the last set stays, the error shows in /clusters, and the source
retries with a growing backoff (0.1 s to 5 s), re-reading its credentials first (service account tokens rotate).
Which endpoints take traffic, and their `zone`/`node`/`pod` metadata: see `kubernetes_slices`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from typing import TYPE_CHECKING, Any

from meshbatch.config.plain import Discovery, EndpointSpec
from meshbatch.discovery.base import COMMON_KEYS, SOURCES, Apply, SourceKind, SourceStatus
from meshbatch.discovery.kubernetes_api import ApiError, Gone, SliceApi, load_credentials
from meshbatch.discovery.kubernetes_slices import PortChoice, SliceView, view

if TYPE_CHECKING:
    from meshbatch.config.model import Discovery as DiscoveryModel

log = logging.getLogger("meshbatch.discovery")
BACKOFF = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
WATCH_SECONDS = (240, 360)  # the server ends each watch after a random time in this range (as client-go asks)
SHORT_WATCH = 1.0  # a stream that ends sooner with no event is an error (backoff), as client-go's reflector has it
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SERVICE_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class KubernetesSource:
    def __init__(self, config: Discovery, cluster: str) -> None:
        assert config.service is not None
        self.config = config
        self.cluster = cluster
        self.service = config.service
        self.namespace = config.namespace or ""
        self.choice = PortChoice(config.port, config.port_name)
        self.status = SourceStatus()
        self.slices: dict[str, dict[str, Any]] = {}
        self.resource_version = ""
        self.view = SliceView()
        self.origin = ""
        self.counts = {"lists": 0, "watches": 0, "watch_restarts": 0, "expired": 0, "bookmarks": 0, "events": 0}
        self._attempt = 0
        self._applied: list[EndpointSpec] | None = None

    # the set ----------------------------------------------------------------------------------------------
    def publish(self, apply: Apply) -> None:
        """Apply the endpoint set the slices give now, when it differs from the last one applied."""
        current = view(self.slices.values(), self.choice)
        for name, why in current.problems.items():
            if self.view.problems.get(name) != why:
                log.warning("cluster %s: EndpointSlice %s/%s skipped: %s", self.cluster, self.namespace, name, why)
        self.view = current
        if self._applied is not None and current.endpoints == self._applied:
            return
        self._applied = current.endpoints
        self.status.updates += 1
        self.status.endpoints = len(current.endpoints)
        apply(list(current.endpoints))

    def on_event(self, event: dict[str, Any], apply: Apply) -> None:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            code, message = int(obj.get("code") or 0), str(obj.get("message", ""))
            raise Gone(410, message) if code == 410 else ApiError(code, message or "watch error")
        if kind not in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
            raise ApiError(0, f"not a watch event: type {kind!r}")
        version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        if kind == "BOOKMARK":
            self.counts["bookmarks"] += 1
        else:
            name = str((obj.get("metadata") or {}).get("name", ""))
            if kind == "DELETED":
                self.slices.pop(name, None)
            else:
                self.slices[name] = obj
            self.counts["events"] += 1
            self.publish(apply)
        if version:
            self.resource_version = version
        self._attempt = 0

    # the API --------------------------------------------------------------------------------------------------
    async def relist(self, api: SliceApi, apply: Apply) -> None:
        items, version = await api.list()
        self.counts["lists"] += 1
        self.slices = {str((item.get("metadata") or {}).get("name", "")): item for item in items}
        self.resource_version = version or "0"
        self.status.last_error = ""
        self._attempt = 0
        self.publish(apply)

    async def follow(self, api: SliceApi, apply: Apply) -> None:
        """List when there is no version to resume from; then watch, again and again."""
        while True:
            try:
                if not self.resource_version:
                    await self.relist(api, apply)
                self.counts["watches"] += 1
                started, events = time.monotonic(), 0
                async for event in api.watch(self.resource_version, random.randint(*WATCH_SECONDS)):
                    self.on_event(event, apply)
                    events += 1
                if not events and time.monotonic() - started < SHORT_WATCH:
                    raise ApiError(0, "the watch stream ended at once, with no event")  # not a hot loop: back off
                self.counts["watch_restarts"] += 1
                self.status.last_error = ""
            except Gone as exc:
                if not self.resource_version:  # the list itself (its continue token expired): back off first
                    raise ApiError(410, f"list: {exc}") from None
                log.info("cluster %s: resourceVersion %s expired (%s): listing again", self.cluster,
                         self.resource_version, exc)
                self.counts["expired"] += 1
                self.resource_version = ""

    async def run(self, apply: Apply) -> None:
        while True:
            api: SliceApi | None = None
            try:
                credentials = await load_credentials(self.config)
                self.origin = credentials.origin
                self.namespace = self.config.namespace or credentials.namespace
                api = SliceApi(credentials, self.namespace, self.service, self.config.timeout_ms / 1000)
                await self.follow(api, apply)
            except ApiError as exc:
                self.fail(exc)
            finally:
                if api is not None:
                    await api.close()
            await asyncio.sleep(BACKOFF[min(self._attempt, len(BACKOFF) - 1)])
            self._attempt += 1

    def fail(self, exc: ApiError) -> None:
        error = f"{self.namespace or '-'}/{self.service}: {exc}"
        if error != self.status.last_error:
            log.error("cluster %s: Kubernetes discovery keeps the last endpoints: %s", self.cluster, error)
        self.status.failures += 1
        self.status.last_error = error

    def summary(self) -> dict[str, object]:
        port: object = self.config.port_name or self.config.port or "the only one"
        return {"type": "kubernetes", "service": self.service, "namespace": self.namespace, "port": port,
                "credentials": self.origin, "resource_version": self.resource_version, "slices": len(self.slices),
                "ready": self.view.ready, "not_ready": self.view.not_ready, "terminating": self.view.terminating,
                "terminating_fallback": self.view.fallback, "slice_problems": dict(self.view.problems),
                **self.counts, **self.status.as_dict()}


def _check(config: DiscoveryModel) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if config.service is not None and (len(config.service) > 63 or not SERVICE_NAME.match(config.service)):
        problems.append(("service", f"{config.service!r} is not a Service name (lower-case letters, digits and "
                                    "'-', starting with a letter, at most 63)"))
    for key in ("namespace", "port_name"):
        value = getattr(config, key)
        if value is not None and (len(value) > 63 or not DNS_LABEL.match(value)):
            problems.append((key, f"{value!r} is not a DNS label (lower-case letters, digits and '-', at most 63)"))
    if config.port is not None and config.port_name is not None:
        problems.append(("port_name", "set either port (the endpoints' port number) or port_name, not both"))
    return problems


SOURCES.register("kubernetes")(SourceKind(
    KubernetesSource,
    required=("service",),
    check=_check,
    accepted=COMMON_KEYS | {"service", "namespace", "port", "port_name", "kubeconfig", "context", "timeout_ms"},
))

__all__ = ["KubernetesSource"]
