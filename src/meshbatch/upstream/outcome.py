"""What an error of an exchange says about the endpoint: the 5xx it counts as, or nothing.

Local-origin failures count as the gateway error a proxy answers for them (as Envoy maps them): a refused or
timed-out connect is a 503, a reset or malformed answer a 502, an answer that did not come in time a 504.
Errors that say nothing about the endpoint are not counted: the pool of this proxy was full, the caller's
own deadline ran out, the cluster was removed, a breaker, limit or injected fault of this proxy answered.
"""

from __future__ import annotations

from meshbatch.errors import ProxyError

NOT_THE_ENDPOINTS_FAULT = frozenset({
    "upstream_pool_overflow",
    "upstream_pool_timeout",
    "cluster_removed",
    "deadline_exceeded",
    "draining",
    "circuit_open",  # decided by this proxy before the endpoint was asked
    "concurrency_limited",
    "rate_limited",
    "fault_injected",
})


def error_status(error: ProxyError) -> int:
    """The status an exchange that failed with `error` counts as; 0 when it does not count."""
    if error.reason in NOT_THE_ENDPOINTS_FAULT or error.status < 500:
        return 0
    return error.status


__all__ = ["NOT_THE_ENDPOINTS_FAULT", "error_status"]
