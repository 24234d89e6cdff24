"""Access logs: the line format, sampling, the bounded buffer and the writes, without a running server or timers."""

from __future__ import annotations

import io

import orjson

from meshbatch.config.model import AccessLog as AccessLogConfig
from meshbatch.http.message import Request, Response
from meshbatch.telemetry.access_log import AccessLog
from meshbatch.telemetry.metrics import Registry

TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _request() -> Request:
    request = Request(b"POST", b"/orders?x=1", [(b"user-agent", b"curl/8"), (b"traceparent", TRACEPARENT)], b"{}",
                      host=b"service", client="10.0.0.7", request_id=b"abc123", received_at=1.0)
    request.route = "orders"
    return request


def _batched(status: int = 200) -> Response:
    response = Response(status, [(b"x-meshbatch-batch-id", b"9f-12"), (b"x-meshbatch-batch-size", b"16"),
                                 (b"x-meshbatch-flush", b"items"), (b"x-meshbatch-queue-ms", b"1.250")], b'{"ok":1}')
    response.upstream = "127.0.0.1:9000"
    return response


def _log(registry: Registry | None = None, rng: float = 0.0, **config: object) -> tuple[AccessLog, io.BytesIO]:
    out = io.BytesIO()
    return AccessLog(AccessLogConfig(**config), registry or Registry(), out=out, rng=lambda: rng), out  # type: ignore[arg-type]


async def test_a_line_has_every_field_of_the_request_and_its_batch() -> None:
    log, out = _log()
    observed: list[int] = []
    observer = log.observer("ingress", lambda req, resp, s: observed.append(resp.status))
    observer(_request(), _batched(), 0.0042)
    assert observed == [200]  # the request counters still run first
    await log.close()
    line = orjson.loads(out.getvalue())
    assert line["time"].endswith("Z")
    expected = {
        "listener": "ingress", "route": "orders", "method": "POST", "path": "/orders?x=1", "host": "service",
        "status": 200, "duration_ms": 4.2, "response_flags": "-", "reason": None, "upstream": "127.0.0.1:9000",
        "request_id": "abc123", "client": "10.0.0.7", "bytes_in": 2, "bytes_out": 8, "batch_id": "9f-12",
        "batch_size": 16, "queue_ms": 1.25, "flush": "items", "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "user_agent": "curl/8",
    }
    assert {k: line[k] for k in expected} == expected


async def test_flags_and_reasons_of_local_replies_are_logged() -> None:
    log, out = _log()
    response = Response(429, [], b"{}")
    response.flag, response.reason = "UO", "queue_full"
    log.observer("ingress", lambda *a: None)(_request(), response, 0.0)
    await log.close()
    line = orjson.loads(out.getvalue())
    assert (line["status"], line["response_flags"], line["reason"], line["batch_id"]) == (429, "UO", "queue_full", None)


async def test_sampling_keeps_errors_and_drops_the_unlucky() -> None:
    log, out = _log(rng=0.7, sample=0.5)  # every random draw is 0.7: above the 0.5 sample
    observer = log.observer("ingress", lambda *a: None)
    observer(_request(), _batched(200), 0.001)
    observer(_request(), _batched(503), 0.001)
    flagged = _batched(200)
    flagged.flag = "UPE"
    observer(_request(), flagged, 0.001)
    await log.close()
    statuses = [(line["status"], line["response_flags"]) for line in map(orjson.loads, out.getvalue().splitlines())]
    assert statuses == [(503, "-"), (200, "UPE")]


async def test_sampling_can_drop_errors_too() -> None:
    lucky, out = _log(rng=0.2, sample=0.5, always_errors=False)
    lucky.observer("ingress", lambda *a: None)(_request(), _batched(200), 0.0)
    unlucky, out2 = _log(rng=0.7, sample=0.5, always_errors=False)
    unlucky.observer("ingress", lambda *a: None)(_request(), _batched(503), 0.0)
    await lucky.close()
    await unlucky.close()
    assert len(out.getvalue().splitlines()) == 1
    assert out2.getvalue() == b""


async def test_a_full_buffer_drops_and_counts() -> None:
    registry = Registry()
    log, out = _log(registry, max_buffer=16)
    observer = log.observer("ingress", lambda *a: None)
    for _ in range(20):
        observer(_request(), _batched(), 0.0)
    assert len(log.buffer) == 16
    assert log.dropped.get(()) == 4
    await log.close()
    assert len(out.getvalue().splitlines()) == 16
    assert log.lines.get(()) == 16
    assert b"meshbatch_access_log_dropped_total 4.0" in registry.render()


async def test_take_formats_and_empties_the_buffer() -> None:
    log, _ = _log()
    log.observer("ingress", lambda *a: None)(_request(), _batched(), 0.0)
    data = log.take()
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert log.buffer == [] and log.take() == b""


async def test_the_timer_flushes_in_the_background(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    path = tmp_path / "access.log"
    log = AccessLog(AccessLogConfig(path=str(path), flush_ms=60_000), Registry())
    log.start()
    log.observer("ingress", lambda *a: None)(_request(), _batched(), 0.0)
    log._tick(True)  # what the timer does when it fires: format, write in a worker thread, re-arm
    assert log._writing is not None
    await log._writing
    assert orjson.loads(path.read_bytes())["route"] == "orders"
    await log.close()
    assert log._timer is None
