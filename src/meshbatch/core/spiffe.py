"""SPIFFE IDs (`spiffe://TRUST_DOMAIN/PATH`): parsing, validation and the parts policies match on. Pure.

The rules are those of the SPIFFE ID standard: scheme `spiffe`, a trust domain of lower-case letters, digits,
dots, dashes and underscores, no port, user info, query or fragment; path segments of letters, digits, dots,
dashes and underscores, none empty, `.` or `..`. Workloads are named `spiffe://TD/ns/NAMESPACE/sa/ACCOUNT`
(the Istio and Linkerd convention), which is where `namespace` comes from.

An X509-SVID carries its SPIFFE ID as its one and only URI SAN (X509-SVID standard, section 2): a certificate
with a SPIFFE ID and another URI (`https://...`, a second `spiffe://...`) is not an SVID, and is refused
wherever an identity is read from a certificate, so that no two readers of one certificate (this proxy, an
upstream, a log) can disagree on who it names. `svid_id` is that rule.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]{1,255}")
_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")
MAX_LENGTH = 2048


class InvalidSpiffeId(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class SpiffeId:
    trust_domain: str
    path: str  # "" or "/seg/seg..."

    @classmethod
    def parse(cls, text: str) -> SpiffeId:
        if len(text) > MAX_LENGTH:
            raise InvalidSpiffeId(f"longer than {MAX_LENGTH} characters")
        scheme, sep, rest = text.partition("://")
        if not sep or scheme != "spiffe":
            raise InvalidSpiffeId(f"{text!r}: must start with spiffe://")
        domain, slash, path = rest.partition("/")
        if not _TRUST_DOMAIN.fullmatch(domain):
            raise InvalidSpiffeId(f"{text!r}: the trust domain must be lower-case letters, digits, '.', '-', '_'")
        if slash:
            for segment in path.split("/"):
                if not _SEGMENT.fullmatch(segment) or segment in (".", ".."):
                    raise InvalidSpiffeId(f"{text!r}: path segment {segment!r} is empty or has characters "
                                          "other than letters, digits, '.', '-', '_'")
        return cls(domain, "/" + path if slash else "")

    def __str__(self) -> str:
        return f"spiffe://{self.trust_domain}{self.path}"

    @property
    def namespace(self) -> str | None:
        """NS of `/ns/NS/sa/SA`, the workload naming convention; None for other paths."""
        parts = self.path.split("/")
        if len(parts) >= 5 and parts[1] == "ns" and parts[3] == "sa":
            return parts[2]
        return None

    @property
    def service_account(self) -> str | None:
        parts = self.path.split("/")
        if len(parts) >= 5 and parts[1] == "ns" and parts[3] == "sa":
            return parts[4]
        return None


class NotAnSvid(ValueError):
    """A certificate whose URI SANs are not exactly one `spiffe://` ID; `reason` is a stable metrics label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def svid_id(uris: Sequence[str]) -> str:
    """The SPIFFE ID of a certificate whose URI SANs are `uris` (all of them, in order); NotAnSvid unless they
    are exactly one `spiffe://` URI. The ID itself is not parsed here (see SpiffeId.parse)."""
    spiffe = [uri for uri in uris if uri.startswith("spiffe://")]
    if len(uris) == 1 and spiffe:
        return spiffe[0]
    if not spiffe:
        raise NotAnSvid("no_spiffe_id", f"no spiffe:// URI SAN (URI SANs: {_show(uris)})")
    if len(spiffe) > 1:
        raise NotAnSvid("several_spiffe_ids", f"{len(spiffe)} spiffe:// URI SANs: {_show(uris)}")
    raise NotAnSvid("several_uri_sans", f"a SPIFFE ID and other URI SANs: {_show(uris)}; an X509-SVID has "
                    "exactly one URI SAN")


def _show(uris: Sequence[str]) -> str:
    return ", ".join(uri[:200] for uri in uris[:5]) + (" ..." if len(uris) > 5 else "") if uris else "none"


def workload_id(trust_domain: str, namespace: str, account: str) -> SpiffeId:
    return SpiffeId.parse(f"spiffe://{trust_domain}/ns/{namespace}/sa/{account}")


def check_trust_domain(value: str) -> str:
    if not _TRUST_DOMAIN.fullmatch(value):
        raise InvalidSpiffeId(f"{value!r}: a trust domain is lower-case letters, digits, '.', '-', '_'")
    return value


__all__ = ["InvalidSpiffeId", "NotAnSvid", "SpiffeId", "check_trust_domain", "svid_id", "workload_id"]
