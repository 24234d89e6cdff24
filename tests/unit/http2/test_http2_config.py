"""A cluster's `protocol`: http1 by default, http2 taken to its endpoints' pools (and changed by a reload), any
other value an error with its path."""

from __future__ import annotations

import asyncio
from textwrap import dedent

import pytest

from meshbatch.config import ConfigError, parse
from meshbatch.upstream.cluster import Cluster

CONFIG = """
listeners:
  - name: main
    listen: 127.0.0.1:0
    routes:
      - name: all
        cluster: grpc
clusters:
  - name: grpc
    endpoints: [127.0.0.1:9000]
{protocol}
"""


def test_http1_is_the_default_and_http2_is_taken() -> None:
    assert parse(dedent(CONFIG.format(protocol=""))).clusters[0].protocol == "http1"
    assert parse(dedent(CONFIG.format(protocol="    protocol: http2"))).clusters[0].protocol == "http2"


def test_another_protocol_is_an_error_with_its_path() -> None:
    with pytest.raises(ConfigError) as info:
        parse(dedent(CONFIG.format(protocol="    protocol: h2")))
    problems = [str(p) for p in info.value.problems]
    assert len(problems) == 1 and problems[0].startswith("clusters[0].protocol:"), problems
    assert "http1" in problems[0] and "http2" in problems[0]


async def test_the_endpoints_pools_speak_the_clusters_protocol_across_a_reload() -> None:
    loop = asyncio.get_running_loop()
    h1 = parse(dedent(CONFIG.format(protocol=""))).clusters[0]
    h2 = parse(dedent(CONFIG.format(protocol="    protocol: http2"))).clusters[0]
    first = Cluster(h2, loop)
    pool = first.hosts.all[0].pool
    assert pool.streams is not None and pool.take_idle() is None
    second = Cluster(h1, loop, previous=first)
    assert second.hosts.all[0].pool is pool and pool.streams is None  # the same pool, now HTTP/1.1
    second.close()
