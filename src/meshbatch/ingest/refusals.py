"""The ingest route's own errors: the 422 of a request none of whose events was accepted (every one was parked in
dead letters by `validate`), and the 502 of an `ack: delivered` producer whose event was parked instead of
delivered.

Kept out of the compiled modules: mypyc keeps no class attributes (`status`, `flag`, `default_reason`) on a
compiled subclass of the interpreted `ProxyError`, which would answer 500, or with its base's reason
(tests/unit/test_compiled_rules.py).
"""

from __future__ import annotations

from typing import Any

import orjson

from meshbatch.errors import BadGateway, ProxyError

MAX_LISTED = 100  # dead letters listed in an answer (the count is always whole)


class DeliveryFailed(BadGateway):
    """502: the event was parked in dead letters instead of being delivered."""

    default_reason = "ingest_dead_lettered"


class EventsDeadLettered(ProxyError):
    """422: every event of the request was parked in dead letters by the pipeline (none accepted)."""

    status, flag, default_reason = 422, "DPE", "events_dead_lettered"

    def __init__(self, letters: list[tuple[str, str]], dropped: int) -> None:
        n = len(letters)
        what = "the event breaks" if n == 1 else f"all {n} events break"
        super().__init__(detail=f"{what} the route's rules and {'is' if n == 1 else 'are'} parked in dead "
                                f"letters ({letters[0][1]})")
        self.letters = letters
        self.dropped = dropped

    def body(self) -> bytes:
        return orjson.dumps({"error": self.error, "reason": self.reason, "detail": self.detail,
                             **letters_listed(self.letters, self.dropped)})


def letters_listed(letters: list[tuple[str, str]], dropped: int) -> dict[str, Any]:
    """An answer's `dropped`, `dead_lettered` and `dead_letters` (the first MAX_LISTED), those that apply."""
    out: dict[str, Any] = {"dropped": dropped} if dropped else {}
    if letters:
        out["dead_lettered"] = len(letters)
        out["dead_letters"] = [{"id": i, "reason": r} for i, r in letters[:MAX_LISTED]]
    return out


__all__ = ["MAX_LISTED", "DeliveryFailed", "EventsDeadLettered", "letters_listed"]
