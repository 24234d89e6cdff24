"""A listener's rules for the HTTP/1.1 requests it reads (http/parser.py)."""

from __future__ import annotations

from dataclasses import dataclass

from meshbatch.http.forwarded import DEFAULT_TRUST, Trust
from meshbatch.http.paths import DEFAULT_RULES, PathRules


@dataclass(frozen=True, slots=True)
class ParserLimits:
    """A listener's rules for the requests it reads (its `limits`, `path_normalization` and trust settings)."""

    max_header_bytes: int = 65_536
    max_body_bytes: int = 8_388_608
    max_headers: int = 100  # header fields of a request; its trailer fields are capped the same, apart
    paths: PathRules = DEFAULT_RULES
    trust: Trust = DEFAULT_TRUST


__all__ = ["ParserLimits"]
