"""A batched request's objects are freed by reference counting when its caller is done, never left in reference
cycles for the cyclic collector: its full collections stall the event loop for milliseconds, and per-request
cycles would make them frequent and long under load."""

import asyncio
import gc
from collections import Counter

from batching_support import make_handler, request, settle, submit

BATCHING_TYPES = {"Item", "Waiter", "Batch", "ItemResult", "Future", "Task"}


async def test_answered_and_expired_requests_leave_no_cyclic_garbage():
    handler, upstream, clock = make_handler(max_in_flight=1, max_items=4, max_wait_ms=5)
    warm = submit(handler, request(0))
    await settle()
    upstream.calls[0].echo()
    await warm
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        answered = [submit(handler, request(n)) for n in range(1, 9)]
        await settle()
        while any(not task.done() for task in answered):
            for call in upstream.pending():
                call.echo()
            await settle()
        late = submit(handler, request(99, [(b"x-meshbatch-deadline-ms", b"1")], received_at=clock.now()))
        blocker = submit(handler, request(100))
        await settle()
        clock.advance(0.010)
        handler.dispatcher.pump()
        assert (await late).status == 504
        while not blocker.done():
            for call in upstream.pending():
                call.echo()
            await settle()
        responses = await asyncio.gather(*answered)
        assert {r.status for r in responses} == {200}
        del answered, responses, late, blocker
        await settle()
        gc.collect()
        leaked = Counter(type(o).__name__ for o in gc.garbage if type(o).__name__ in BATCHING_TYPES)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert not leaked, leaked
