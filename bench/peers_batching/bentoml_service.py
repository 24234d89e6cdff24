"""The `batching` scenario's work served by BentoML adaptive batching (run in bench/.peers/bentoml).

    cd bench/peers_batching && bentoml serve bentoml_service:Batching --host 127.0.0.1 --port P

One worker process. Its APIs (BentoML takes the arguments as a JSON object):

    POST /item    {"items": [ITEM]} -> [RESULT]; `batchable=True`: requests are merged by BentoML's adaptive
                  batching dispatcher and a batch is ONE call of `batch_work.Work.run` (the same work as the
                  upstream behind meshbatch)
    POST /stats   the work's counters (calls, items, sizes, service times);  POST /reset clears them
    GET  /readyz  BentoML's own readiness

The work is configured by the MESHBATCH_BENCH_* variables (see `batch_work.from_env`); the batching limits by
MESHBATCH_BENCH_MAX_BATCH (max_batch_size) and MESHBATCH_BENCH_MAX_LATENCY_MS (max_latency_ms: BentoML's
latency budget, beyond which a queued request is answered 503; the time it holds a batch open is learnt by its
dispatcher, it has no separate bound for it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # batch_work.py

import bentoml

import batch_work

MAX_BATCH = int(os.environ.get("MESHBATCH_BENCH_MAX_BATCH", "64"))
MAX_LATENCY_MS = int(float(os.environ.get("MESHBATCH_BENCH_MAX_LATENCY_MS", "10000")))


# No per-request access log (meshbatch writes none by default either).
@bentoml.service(workers=1, traffic={"timeout": 60}, logging={"access": {"enabled": False}})
class Batching:
    def __init__(self) -> None:
        self.work = batch_work.from_env(os.environ)

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH, max_latency_ms=MAX_LATENCY_MS)
    async def item(self, items: list[Any]) -> list[Any]:
        results: list[Any] = await self.work.run(items)
        return results

    @bentoml.api
    async def stats(self) -> dict[str, Any]:
        return self.work.stats()

    @bentoml.api
    async def reset(self) -> dict[str, Any]:
        self.work.reset()
        return {}
