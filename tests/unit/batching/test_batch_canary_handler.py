"""The canary wired into a route's batcher, on a fake clock: batches formed under each arm, figures from real
answers, decisions applied to the accumulator, shown in /batchers, counted and logged; callers answered once."""

import asyncio
import logging

from batching_support import make_handler, request, settle, submit

from meshbatch.telemetry.metrics import Registry

CANARY = {"canary": 0.25, "candidate": {"max_items": 3}, "window_ms": 1000, "min_batches": 5, "passes": 1}


async def serve(handler, upstream, clock, rounds: int, per_round: int, answer):
    """Rounds of `per_round` requests; each upstream call takes 1 ms per item and is answered by `answer`."""
    responses = []
    for _ in range(rounds):
        tasks = [submit(handler, request(i)) for i in range(per_round)]
        for _ in range(1000):
            await settle()
            for call in upstream.pending():
                clock.advance(0.001 * len(call.items))
                answer(call)
            await settle()
            if all(task.done() for task in tasks):
                break
            clock.advance(0.0005)
            handler.dispatcher.pump()
        responses += [task.result() for task in tasks]
        clock.advance(0.05)
    return responses


async def test_candidate_batches_use_its_setting_and_a_better_candidate_is_promoted(caplog):
    registry = Registry()
    handler, upstream, clock = make_handler(max_items=8, max_wait_ms=5, max_in_flight=1, registry=registry,
                                            adaptive=CANARY)
    sizes: list[int] = []

    def answer(call):
        sizes.append(len(call.items))
        call.echo()

    caplog.set_level(logging.INFO, logger="meshbatch.batching")
    responses = await serve(handler, upstream, clock, rounds=12, per_round=9, answer=answer)
    assert len(responses) == 12 * 9 and {r.status for r in responses} == {200}
    assert 3 in sizes and 8 in sizes and max(sizes) == 8
    summary = handler.summary()["canary"]
    assert summary["batches"]["candidate"] > 0 and summary["batches"]["current"] > 0
    # a candidate batch costs the same per item and answers its smaller batches sooner: promoted
    responses = await serve(handler, upstream, clock, rounds=40, per_round=9, answer=answer)
    assert {r.status for r in responses} == {200}
    summary = handler.summary()["canary"]
    assert summary["state"] == "promoted", summary
    decision = summary["decisions"][0]  # the newest: the final one (windows before it: keep)
    assert all(earlier["decision"] == "keep" for earlier in summary["decisions"][1:])
    assert decision["decision"] == "promote" and decision["reason"] == "passed"
    assert decision["candidate"]["batches"] >= 5 and decision["current"]["batches"] >= 5
    assert handler.accumulator.cap == 3
    assert registry.counter("meshbatch_batch_canary_decisions_total", "", []).get(
        ("orders", "promote", "passed")) == 1
    assert any("canary promote on route orders" in record.getMessage() for record in caplog.records)
    text = registry.render().decode()
    assert 'meshbatch_batch_canary_promoted{route="orders"} 1.0' in text
    assert 'meshbatch_batch_canary_running{route="orders"} 0.0' in text
    before = len(sizes)
    await serve(handler, upstream, clock, rounds=2, per_round=9, answer=answer)
    assert max(sizes[before:]) == 3  # every batch runs the promoted setting


async def test_a_candidate_the_upstream_always_refuses_is_rolled_back_and_callers_answered_once(caplog):
    registry = Registry()
    handler, upstream, clock = make_handler(max_items=8, max_wait_ms=5, max_in_flight=1, registry=registry,
                                            adaptive=CANARY)

    def answer(call):  # the candidate's batches (3 items) always fail
        if len(call.items) == 3:
            call.reply_json({"error": "boom"}, status=503)
        else:
            call.echo()

    caplog.set_level(logging.INFO, logger="meshbatch.batching")
    # 12 a round: the current arm's batches have 8, 4 or 1 items, never 3
    responses = await serve(handler, upstream, clock, rounds=12, per_round=12, answer=answer)
    assert len(responses) == 12 * 12  # every caller answered, once (a task has one result)
    statuses = [r.status for r in responses]
    assert statuses.count(502) == 3 * 3 and set(statuses) == {200, 502}
    summary = handler.summary()["canary"]
    assert summary["state"] == "rolled_back"
    decision = summary["decisions"][0]  # the newest: the final one (windows before it: keep)
    assert all(earlier["decision"] == "keep" for earlier in summary["decisions"][1:])
    assert (decision["decision"], decision["reason"]) == ("rollback", "errors")
    assert decision["candidate"]["failed_batches"] == 3 and decision["candidate"]["error_rate"] == 1.0
    assert handler.accumulator.cap == 8
    assert registry.counter("meshbatch_batch_canary_decisions_total", "", []).get(
        ("orders", "rollback", "errors")) == 1
    assert any(record.levelno == logging.WARNING and "canary rollback on route orders: errors" in
               record.getMessage() for record in caplog.records)
    # after the rollback no batch is formed under the candidate
    sizes: list[int] = []
    responses = await serve(handler, upstream, clock, rounds=3, per_round=8,
                            answer=lambda call: (sizes.append(len(call.items)), call.echo()))
    assert {r.status for r in responses} == {200} and 3 not in sizes


async def test_a_route_without_canary_has_none_in_its_summary():
    handler, _, _ = make_handler()
    assert handler.summary()["canary"] is None
    await asyncio.sleep(0)


async def test_candidate_slots_apply_to_candidate_batches_only():
    handler, upstream, _ = make_handler(
        max_items=4, max_in_flight=1, adaptive={"canary": 0.5, "candidate": {"max_in_flight": 3}})
    dispatcher = handler.dispatcher
    assert dispatcher.max_in_flight == 1  # the current arm's slots first
    tasks = [submit(handler, request(i)) for i in range(4)]
    await settle()
    assert len(upstream.pending()) == 1 and dispatcher.max_in_flight == 3  # the next batch is the candidate's
    for call in upstream.pending():
        call.echo()
    await asyncio.gather(*tasks)
