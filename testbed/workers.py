"""`meshbatch run --workers N` in tests: how many connections each worker accepted, read from the supervisor's
merged admin view, and traffic sent until every worker has served some."""

from __future__ import annotations

import httpx


def accepted(admin: str) -> list[int]:
    """Each worker's connections accepted on the first listener (from the supervisor's `/listeners`)."""
    view = httpx.get(admin + "/listeners", timeout=5).json()
    return [w["listeners"][0]["accepted"] if "listeners" in w else 0 for w in view["workers"]]


def send_until_both_served(url: str, admin: str) -> int:
    """New connections (one request each) until both workers accepted some; how many were sent."""
    sent = 0
    with httpx.Client(timeout=5, limits=httpx.Limits(max_keepalive_connections=0)) as client:  # a connection each
        while min(accepted(admin)) == 0:
            assert sent < 400, f"one worker took every connection: {accepted(admin)}"
            for _ in range(10):
                assert client.get(url).status_code == 200
                sent += 1
    return sent


__all__ = ["accepted", "send_until_both_served"]
