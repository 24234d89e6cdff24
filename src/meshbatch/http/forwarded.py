"""Whom to believe about a request's origin: the client address, and which forwarding headers pass. Pure.

Anyone can send `X-Forwarded-For: 10.0.0.1`. The address policies (`ip_blocks`, `source.ip`), rate limits keyed
by `client` and access logs use is therefore Envoy's "trusted client address" (`use_remote_address: true`):

- `xff_num_trusted_hops: 0` (the default): the TCP peer. A client-supplied X-Forwarded-For is never believed.
- `xff_num_trusted_hops: N`: the Nth address from the right of the incoming X-Forwarded-For (the rightmost N
  entries were appended by the N proxies in front of this one, which the operator vouches for); the peer when
  the header has fewer than N entries or that entry is not an IP address.

A listener marked `edge` faces callers outside the mesh, so on it (Envoy's edge recommendations):
- with no trusted hops, a client's `x-forwarded-for`, `forwarded`, `x-forwarded-host`, `x-forwarded-port` and
  `x-real-ip` are dropped: the upstream gets `x-forwarded-for: <peer>`, replaced rather than appended to;
- a client's `x-request-id` is replaced by a new one, and `traceparent`/`tracestate` are dropped (a new trace
  starts), unless `preserve_external_request_id` / `preserve_external_trace`.
A listener that is not an edge (a sidecar's inbound, a hop inside the mesh) passes them on and appends the peer
to `x-forwarded-for`. `x-forwarded-proto` is believed only from trusted hops: otherwise it is the scheme of the
connection. The parser applies these rules, so routes, policies and the upstream see the same headers.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Trust:
    """A listener's trust in forwarding headers (docs/data-plane.md, "Forwarded headers")."""

    edge: bool = False
    xff_num_trusted_hops: int = 0
    preserve_external_request_id: bool = False
    preserve_external_trace: bool = False

    @property
    def replace_forwarded(self) -> bool:
        """Drop a client's x-forwarded-for and the like (the upstream gets the peer only)."""
        return self.edge and not self.xff_num_trusted_hops

    @property
    def drop_request_id(self) -> bool:
        return self.edge and not self.preserve_external_request_id

    @property
    def drop_trace(self) -> bool:
        return self.edge and not self.preserve_external_trace


DEFAULT_TRUST = Trust()


def client_address(xff: list[bytes], hops: int, peer: str) -> str:
    """The trusted client address: the `hops`th entry from the right of the X-Forwarded-For values (each value a
    comma-separated list, in the order received), else `peer`."""
    if hops <= 0:
        return peer
    entries: list[bytes] = []
    for value in xff:
        entries += value.split(b",")
    if len(entries) < hops:
        return peer
    candidate = entries[-hops].strip(b" \t")
    try:
        return str(ipaddress.ip_address(candidate.decode("ascii")))
    except (ValueError, UnicodeDecodeError):
        return peer


__all__ = ["DEFAULT_TRUST", "Trust", "client_address"]
