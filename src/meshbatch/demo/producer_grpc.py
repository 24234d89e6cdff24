"""The demo producer over gRPC (`meshbatch demo --grpc`): a grpcio client calling `meshbatch.demo.Events/Store`
once per event, `concurrency` calls in flight over a few h2c channels per target, straight to the consumers or
through the proxy (whose batch route gathers the calls into envelope batches). Same figures as the HTTP producer
(demo/producer.py): a call that ends OK counts as acknowledged, any other status by its name."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from meshbatch import extras
from meshbatch.demo.grpc_service import STORE_PATH
from meshbatch.demo.producer import RunResult

CALLS_PER_CHANNEL = 32  # in flight on one HTTP/2 connection: grpcio's one connection would be the bottleneck


async def produce_grpc(name: str, run: str, targets: Sequence[tuple[str, int]], duration: float, concurrency: int,
                       on_progress: Callable[[int], None] | None = None, timeout: float = 10.0) -> RunResult:
    """Call Store for `duration` seconds with `concurrency` calls in flight, spread over `targets`."""
    grpc = extras.import_module("grpc", "grpc", "meshbatch demo --grpc")
    loop = asyncio.get_running_loop()
    result = RunResult(name, run)
    counter = itertools.count()
    prefix = os.urandom(4).hex()
    per_target = max(1, -(-concurrency // (CALLS_PER_CHANNEL * len(targets))))
    # a distinct channel argument keeps grpcio from sharing one subchannel (one connection) among them
    channels = [grpc.aio.insecure_channel(f"{host}:{port}", options=[("meshbatch.demo.channel", i)])
                for host, port in targets for i in range(per_target)]
    stubs = [channel.unary_unary(STORE_PATH) for channel in channels]  # bytes in, bytes out
    stop_at = loop.time() + duration

    async def worker(call: Any) -> None:
        while loop.time() < stop_at:
            seq = next(counter)
            event = {"id": f"{prefix}-{seq}", "run": run, "seq": seq, "sensor": seq % 97, "value": seq * 0.5}
            started = loop.time()
            result.sent += 1
            rpc = call(orjson.dumps(event), timeout=timeout)
            try:
                await rpc
            except grpc.aio.AioRpcError as error:
                key = error.code().name
                result.failed[key] = result.failed.get(key, 0) + 1
                continue
            result.latencies.append(loop.time() - started)
            result.ok += 1
            for key, value in await rpc.trailing_metadata() or ():
                if key == "x-meshbatch-batch-size":
                    result.batch_sizes.append(int(value))
            if on_progress is not None:
                on_progress(1)

    try:
        for channel in channels:
            await asyncio.wait_for(channel.channel_ready(), timeout)
        started = loop.time()
        await asyncio.gather(*(worker(stubs[i % len(stubs)]) for i in range(concurrency)))
        result.seconds = loop.time() - started
    finally:
        for channel in channels:
            await channel.close()
    return result


__all__ = ["produce_grpc"]
