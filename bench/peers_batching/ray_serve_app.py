"""The `batching` scenario's work served by Ray Serve with `@serve.batch`, on 127.0.0.1 (run in bench/.peers/ray).

    python ray_serve_app.py --port P --temp-dir DIR --max-batch-size 64 --batch-wait-ms 5 --max-concurrent-batches 2

A local Ray instance (no dashboard, usage stats off, its session files under --temp-dir), one deployment with one
replica behind Ray Serve's HTTP proxy on 127.0.0.1:P:

    POST /item    one JSON item -> its result; items are batched by `@serve.batch` and a batch is ONE call of
                  `batch_work.Work.run` (the same work as the upstream behind meshbatch)
    GET  /stats   the work's counters (calls, items, sizes, service times);  POST /reset clears them
    GET  /        "ok" once the application is running

The work is configured by the MESHBATCH_BENCH_* variables (see `batch_work.from_env`). Prints "READY" when
serving; on SIGTERM or SIGINT it shuts Serve and Ray down (the harness then ends whatever is left of the
process group and of the processes that name --temp-dir).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # batch_work.py

import ray  # noqa: E402
from ray import serve  # noqa: E402


def build(max_batch_size: int, wait_s: float, max_concurrent_batches: int, max_ongoing: int) -> Any:
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response

    @serve.deployment(
        num_replicas=1,
        max_ongoing_requests=max_ongoing,
        ray_actor_options={"num_cpus": 0},
    )
    class Batching:
        def __init__(self) -> None:
            import batch_work

            self.work = batch_work.from_env(os.environ)

        @serve.batch(
            max_batch_size=max_batch_size,
            batch_wait_timeout_s=wait_s,
            max_concurrent_batches=max_concurrent_batches,
        )
        async def batched(self, items: list[Any]) -> list[Any]:
            results: list[Any] = await self.work.run(items)
            return results

        async def __call__(self, request: Request) -> Response:
            path = request.url.path
            if request.method == "POST" and path == "/item":
                return JSONResponse(await self.batched(await request.json()))
            if request.method == "GET" and path == "/stats":
                return JSONResponse(self.work.stats())
            if request.method == "POST" and path == "/reset":
                self.work.reset()
                return JSONResponse({})
            if request.method == "GET" and path == "/":
                return PlainTextResponse("ok")
            return JSONResponse({"error": "not found"}, status_code=404)

    return Batching.bind()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--temp-dir", required=True, help="Ray's session files (short path: it holds sockets)")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--max-concurrent-batches", type=int, default=2)
    parser.add_argument("--max-ongoing-requests", type=int, default=4096)
    args = parser.parse_args()

    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=args.temp_dir,
        log_to_driver=False,
        logging_level="WARNING",
    )
    stop = threading.Event()  # handlers set after ray.init, which installs its own
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        # No per-request access log (meshbatch writes none by default either); warnings and errors only.
        quiet = {"enable_access_log": False, "log_level": "WARNING"}
        serve.start(http_options={"host": "127.0.0.1", "port": args.port}, logging_config=quiet)
        app = build(args.max_batch_size, args.batch_wait_ms / 1000, args.max_concurrent_batches,
                    args.max_ongoing_requests)
        serve.run(app, name="batching", route_prefix="/", blocking=False, logging_config=quiet)
        print("READY", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
