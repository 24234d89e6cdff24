"""SPIFFE IDs (`spiffe://TRUST_DOMAIN/PATH`): parsing, validation and the parts policies match on. Pure.

The rules are those of the SPIFFE ID standard: scheme `spiffe`, a trust domain of lower-case letters, digits,
dots, dashes and underscores, no port, user info, query or fragment; path segments of letters, digits, dots,
dashes and underscores, none empty, `.` or `..`. Workloads are named `spiffe://TD/ns/NAMESPACE/sa/ACCOUNT`
(the Istio and Linkerd convention), which is where `namespace` comes from.
"""

from __future__ import annotations

import re
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


def workload_id(trust_domain: str, namespace: str, account: str) -> SpiffeId:
    return SpiffeId.parse(f"spiffe://{trust_domain}/ns/{namespace}/sa/{account}")


def check_trust_domain(value: str) -> str:
    if not _TRUST_DOMAIN.fullmatch(value):
        raise InvalidSpiffeId(f"{value!r}: a trust domain is lower-case letters, digits, '.', '-', '_'")
    return value


__all__ = ["InvalidSpiffeId", "SpiffeId", "check_trust_domain", "workload_id"]
