"""One active health probe: GET the check path on a fresh connection, within the timeout."""

from __future__ import annotations

import asyncio

from meshbatch.config.plain import HealthCheck
from meshbatch.errors import ProxyError
from meshbatch.http.client import UpstreamConnection
from meshbatch.upstream.endpoint import Endpoint

MAX_ANSWER = 65_536


def probe_request(config: HealthCheck, host: str) -> bytes:
    return (f"GET {config.path} HTTP/1.1\r\nhost: {config.host or host}\r\n"
            "user-agent: meshbatch-health-check\r\nconnection: close\r\n\r\n").encode()


async def probe(endpoint: Endpoint, config: HealthCheck, request: bytes,
                loop: asyncio.AbstractEventLoop) -> tuple[bool, str]:
    """(passed, what happened)."""
    timeout = config.timeout_ms / 1000
    deadline = loop.time() + timeout
    conn: UpstreamConnection | None = None
    try:
        async with asyncio.timeout(timeout):
            tls = endpoint.pool.limits.tls  # an mTLS cluster is probed over mTLS too
            if tls is None:
                _, conn = await loop.create_connection(lambda: UpstreamConnection(loop, MAX_ANSWER),
                                                       endpoint.host, endpoint.port)
            else:
                _, conn = await loop.create_connection(lambda: UpstreamConnection(loop, MAX_ANSWER),
                                                       endpoint.host, endpoint.port, ssl=tls.context(),
                                                       server_hostname=tls.server_name or "")
            response = await conn.send(request, head=False, deadline=deadline)
    except TimeoutError:
        return False, "timeout"
    except OSError as exc:
        return False, f"connect: {exc.strerror or exc}"
    except ProxyError as exc:
        return False, exc.reason
    finally:
        if conn is not None:
            conn.close()
    ok = config.expects(response.status)
    return ok, f"status {response.status}"


__all__ = ["probe", "probe_request"]
