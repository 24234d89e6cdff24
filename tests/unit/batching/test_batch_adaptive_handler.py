"""Adaptive mode wired into the handler: batches teach the model, the controller retunes the accumulator."""

import asyncio

from batching_support import make_handler, request, settle, submit


async def run_round(handler, upstream, clock, n, cost):
    """Admit n requests and serve until all are answered, on the fake clock."""
    tasks = [submit(handler, request(i)) for i in range(n)]
    for _ in range(10_000):
        await settle()
        for call in upstream.pending():
            clock.advance(cost(len(call.items)))
            call.echo()
        await settle()
        if all(task.done() for task in tasks):
            break
        clock.advance(0.0005)
        handler.dispatcher.pump()
    assert all(task.done() for task in tasks)
    assert {(await task).status for task in tasks} == {200}


async def test_adaptive_learns_the_upstream_and_reports_its_decision():
    handler, upstream, clock = make_handler(max_items=256, max_wait_ms=20, max_in_flight=1,
                                            adaptive={"target_p99_ms": 15, "window": 32})
    sizes = [1, 3, 7, 12, 20, 30, 45, 60, 5, 9, 17, 33, 2, 50, 64, 11] * 3
    for n in sizes:
        await run_round(handler, upstream, clock, n, lambda k: 0.002 + 0.0001 * k)
    model = handler.model
    assert model.ready
    assert abs(model.a - 0.002) < 0.0005 and abs(model.b - 0.0001) < 0.00003
    summary = handler.summary()
    assert summary["adaptive"]["updates"] >= 5 and summary["model"]["samples"] == 32
    controller = handler.controller
    assert handler.accumulator.cap == controller.cap and handler.accumulator.hold == controller.hold
    assert 1 <= controller.cap <= 256 and 0.0 <= controller.hold <= 0.020
    n = controller.cap
    if controller.rate > 0 and n > controller._needed(controller.rate):
        fill = (n - 1) / controller.rate
        assert fill + model.tail(n) - model.expected(1) <= controller.target * controller.scale + 1e-9


async def test_without_adaptive_the_model_still_predicts_for_deadlines():
    handler, upstream, clock = make_handler()
    for n in (1, 2, 4, 8, 16, 3, 5, 9, 12):
        tasks = [submit(handler, request(i)) for i in range(n)]
        await settle()
        (call,) = upstream.pending()
        clock.advance(0.001 * len(call.items))
        call.echo()
        await asyncio.gather(*tasks)
    assert handler.model.ready and handler.controller is None
    assert abs(handler.model.expected(10) - 0.010) < 1e-6
    assert handler.summary()["adaptive"] is None


async def test_adaptive_decision_reaches_the_accumulator(monkeypatch):
    handler, upstream, clock = make_handler(max_items=64, max_wait_ms=20, max_in_flight=1,
                                            adaptive={"target_p99_ms": 10, "window": 16})
    from meshbatch.batching.adaptive import AdaptiveController

    def decide(self, now, arrivals):
        self.hold, self.cap = 0.004, 3

    monkeypatch.setattr(AdaptiveController, "update", decide)
    await run_round(handler, upstream, clock, 1, lambda k: 0.001)
    assert (handler.accumulator.hold, handler.accumulator.cap) == (0.004, 3)
    tasks = [submit(handler, request(i)) for i in range(2)]
    await settle()
    assert upstream.pending() == []  # held for 4 ms although the slot is free
    clock.advance(0.004)
    handler.dispatcher.pump()
    await settle()
    (call,) = upstream.pending()
    assert call.items == [0, 1]
    call.echo()
    await asyncio.gather(*tasks)
