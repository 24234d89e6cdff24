"""EndpointSlices to endpoints (pure): which endpoints of a Service take traffic, on which port, with what metadata.

An endpoint takes traffic when it is ready (`conditions.ready`; unset means ready, as the API says). An endpoint
that is terminating is not ready; if no endpoint of the Service is ready, the ones still serving while they
terminate take the traffic (kube-proxy does the same), so that a rollout of a single replica does not drop
requests. The port is chosen per slice, since a named target port may be a different number on different pods:
by the Service port's name (`port_name`), by number (`port`), or the slice's only port.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from meshbatch.config.plain import EndpointSpec
from meshbatch.discovery.dns import endpoint_address
from meshbatch.discovery.entries import unique

Slice = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class PortChoice:
    number: int | None = None
    name: str | None = None

    def pick(self, slice_: Slice) -> tuple[int | None, str]:
        """The slice's port for this choice, or None and why not."""
        ports = [p for p in slice_.get("ports") or [] if isinstance(p, Mapping) and p.get("port")]
        if self.name is not None:
            found = [int(p["port"]) for p in ports if (p.get("name") or "") == self.name]
            return (found[0], "") if found else (None, f"no port named {self.name!r}")
        if self.number is not None:
            found = [int(p["port"]) for p in ports if int(p["port"]) == self.number]
            return (found[0], "") if found else (None, f"no port {self.number}")
        if len(ports) == 1:
            return int(ports[0]["port"]), ""
        names = ", ".join(f"{p.get('name') or '-'}={p['port']}" for p in ports)
        return None, f"{len(ports)} ports ({names}): set port_name or port" if ports else "no ports"


@dataclass(slots=True)
class SliceView:
    """The endpoints that take traffic now, and counts for the summary."""

    endpoints: list[EndpointSpec] = field(default_factory=list)
    ready: int = 0
    not_ready: int = 0
    terminating: int = 0
    fallback: bool = False  # no endpoint is ready: serving endpoints that terminate take the traffic
    problems: dict[str, str] = field(default_factory=dict)  # slice name -> why it contributes nothing


def _flag(conditions: Mapping[str, Any], key: str, default: bool) -> bool:
    value = conditions.get(key)
    return default if value is None else bool(value)


def _metadata(endpoint: Mapping[str, Any]) -> dict[str, str]:
    meta: dict[str, str] = {}
    if endpoint.get("zone"):
        meta["zone"] = str(endpoint["zone"])
    if endpoint.get("nodeName"):
        meta["node"] = str(endpoint["nodeName"])
    ref = endpoint.get("targetRef") or {}
    if ref.get("kind") == "Pod" and ref.get("name"):
        meta["pod"] = str(ref["name"])
    if endpoint.get("hostname"):
        meta["hostname"] = str(endpoint["hostname"])
    return meta


def view(slices: Iterable[Slice], choice: PortChoice) -> SliceView:
    """The endpoint set of a Service from all its slices (in a stable order, one entry per address)."""
    out = SliceView()
    ready: list[EndpointSpec] = []
    draining: list[EndpointSpec] = []
    for slice_ in sorted(slices, key=lambda s: str((s.get("metadata") or {}).get("name", ""))):
        name = str((slice_.get("metadata") or {}).get("name", ""))
        port, why = choice.pick(slice_)
        if port is None:
            out.problems[name] = why
            continue
        for endpoint in slice_.get("endpoints") or []:
            addresses = endpoint.get("addresses") or []
            if not addresses:
                continue
            conditions = endpoint.get("conditions") or {}
            is_ready = _flag(conditions, "ready", True)
            serving = _flag(conditions, "serving", is_ready)
            terminating = _flag(conditions, "terminating", False)
            meta = _metadata(endpoint)
            address = endpoint_address(str(addresses[0]), port)  # the addresses of one endpoint are fungible
            if is_ready and not terminating:
                out.ready += 1
                ready.append(EndpointSpec(address=address, metadata=meta))
                continue
            out.not_ready += 1
            if terminating:
                out.terminating += 1
                if serving:
                    draining.append(EndpointSpec(address=address, metadata={**meta, "terminating": "true"}))
    out.fallback = not ready and bool(draining)
    out.endpoints = unique(sorted(ready or draining, key=lambda spec: spec.address))
    return out


__all__ = ["PortChoice", "Slice", "SliceView", "view"]
