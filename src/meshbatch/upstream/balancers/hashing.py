"""A stable 64-bit hash (the same in every process, unlike `hash()`), for rings and tables."""

from __future__ import annotations

from hashlib import blake2b


def hash64(data: bytes, seed: int = 0) -> int:
    digest = blake2b(data, digest_size=8, salt=seed.to_bytes(8, "little") if seed else b"").digest()
    return int.from_bytes(digest, "little")


__all__ = ["hash64"]
