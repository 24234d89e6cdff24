"""One gRPC health probe: grpc.health.v1.Health/Check on a stream of the endpoint's own HTTP/2 connections (the
pool that carries its traffic, so a probe tests what requests use and opens no connection of its own), within
the check's timeout. The message and the verdict are grpc/health.py's."""

from __future__ import annotations

import asyncio

from meshbatch.config.plain import HealthCheck
from meshbatch.errors import ProxyError
from meshbatch.grpc import health
from meshbatch.grpc.timeout import HEADER as GRPC_TIMEOUT
from meshbatch.grpc.timeout import format as format_timeout
from meshbatch.upstream.endpoint import Endpoint


async def grpc_probe(endpoint: Endpoint, config: HealthCheck, authority: str,
                     loop: asyncio.AbstractEventLoop) -> tuple[bool, str]:
    """(passed, what happened)."""
    streams = endpoint.pool.streams
    if streams is None:  # (the config requires protocol: http2; a reload may be switching it)
        return False, "not an HTTP/2 endpoint"
    timeout = config.timeout_ms / 1000
    headers = [*health.request_headers(authority), (GRPC_TIMEOUT, format_timeout(timeout))]
    body = health.request_body(config.service or "")
    try:
        async with asyncio.timeout(timeout):
            response = await streams.request(b"POST", health.PATH, headers, body, loop.time() + timeout)
    except TimeoutError:
        return False, "timeout"
    except OSError as exc:
        return False, f"connect: {exc.strerror or exc}"
    except ProxyError as exc:
        return False, exc.reason
    return health.verdict(response)


__all__ = ["grpc_probe"]
