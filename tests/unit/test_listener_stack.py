"""A listener's request stack (runtime/listener.py) without sockets: the order of its stages (listener checks,
the route matched once, the route's checks, its fast path or its service), and that every admitted request is
answered exactly once, whatever path serves it and however it fails."""

from __future__ import annotations

import asyncio
from typing import Any

from meshbatch.config.model import Match
from meshbatch.errors import Forbidden, ProxyError, RateLimited, Unavailable
from meshbatch.http.message import Request, Response
from meshbatch.routing.match import RouteMatcher, RouteTable
from meshbatch.runtime.listener import ListenerStack
from meshbatch.service import Call, Check, FastPath, Respond, RouteStack


class Answers:
    """The connection's side: what the stack answered, in order."""

    def __init__(self) -> None:
        self.responses: list[Response] = []

    def __call__(self, response: Response) -> None:
        self.responses.append(response)

    @property
    def statuses(self) -> list[int]:
        return [r.status for r in self.responses]


class Service:
    """A route's service: answers `status`, raises `error`, or waits for `release`; records its calls."""

    def __init__(self, status: int = 200, error: BaseException | None = None) -> None:
        self.status = status
        self.error = error
        self.calls: list[Call] = []
        self.release: asyncio.Future[None] | None = None

    async def __call__(self, call: Call) -> Response:
        self.calls.append(call)
        if self.release is not None:
            await self.release
        if self.error is not None:
            raise self.error
        return Response(self.status, [], b"served")


class Fast:
    """A fast path: `mode` says what it does with a call (start and answer later, answer at once, not start)."""

    class Started:
        def __init__(self) -> None:
            self.cancelled = False

        def cancel(self) -> None:
            self.cancelled = True

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.calls: list[Call] = []
        self.respond: Respond | None = None
        self.started = Fast.Started()

    def __call__(self, call: Call, respond: Respond) -> Any:
        self.calls.append(call)
        if self.mode == "no-idle-connection":
            return None
        self.respond = respond
        if self.mode == "answers-at-once":
            respond(Response(200, [], b"fast"))
        return self.started


def refuse(error: ProxyError, seen: list[str], name: str) -> Check:
    def check(call: Call) -> ProxyError | None:
        seen.append(name)
        return error
    return check


def allow(seen: list[str], name: str) -> Check:
    def check(call: Call) -> ProxyError | None:
        seen.append(name)
        return None
    return check


def stack(*routes: tuple[str, str, Service, tuple[Check, ...], FastPath | None],
          checks: tuple[Check, ...] = ()) -> ListenerStack:
    entries = [(RouteMatcher(Match(path_prefix=prefix)), RouteStack(name, "plain", route_checks, service, fast))
               for name, prefix, service, route_checks, fast in routes]
    return ListenerStack("main", RouteTable(entries), checks, asyncio.get_running_loop())


def request(path: bytes = b"/a/1") -> Request:
    return Request(b"GET", path, [(b"host", b"svc")], host=b"svc", received_at=asyncio.get_running_loop().time())


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_the_listener_checks_answer_before_any_route_is_known() -> None:
    seen: list[str] = []
    service = Service()
    answers = Answers()
    listener = stack(("a", "/a", service, (allow(seen, "route"),), None),
                     checks=(allow(seen, "jwt"), refuse(Forbidden("policy_denied"), seen, "policy")))
    req = request()
    assert listener(req, answers) is None
    assert answers.statuses == [403] and seen == ["jwt", "policy"]
    assert not req.route and service.calls == []  # a refused caller learns nothing of the routes


async def test_no_route_is_404_no_route() -> None:
    answers = Answers()
    listener = stack(("a", "/a", Service(), (), None))
    assert listener(request(b"/elsewhere"), answers) is None
    assert answers.statuses == [404] and answers.responses[0].reason == "no_route"


async def test_the_first_matching_route_serves_and_its_own_checks_run_after_the_listeners() -> None:
    seen: list[str] = []
    first, second = Service(201), Service(202)
    answers = Answers()
    listener = stack(("a", "/a", first, (allow(seen, "a-check"),), None),
                     ("a-too", "/a", second, (allow(seen, "other"),), None),
                     checks=(allow(seen, "listener"),))
    req = request()
    pending = listener(req, answers)
    assert isinstance(pending, asyncio.Task)
    await pending
    assert answers.statuses == [201] and seen == ["listener", "a-check"]
    assert req.route == "a" and len(first.calls) == 1 and second.calls == []
    assert first.calls[0].request is req


async def test_a_route_check_refusal_is_answered_without_the_service() -> None:
    seen: list[str] = []
    service = Service()
    answers = Answers()
    listener = stack(("a", "/a", service, (refuse(RateLimited("rate_limited"), seen, "limit"),), None))
    assert listener(request(), answers) is None
    assert answers.statuses == [429] and service.calls == [] and seen == ["limit"]


async def test_a_fast_path_that_answers_at_once_needs_no_task() -> None:
    service = Service()
    fast = Fast("answers-at-once")
    answers = Answers()
    listener = stack(("a", "/a", service, (), fast))
    pending = listener(request(), answers)
    assert pending is fast.started and answers.statuses == [200] and answers.responses[0].body == b"fast"
    await settle()
    assert service.calls == [] and len(answers.responses) == 1


async def test_a_fast_path_that_cannot_start_hands_the_same_call_to_the_service() -> None:
    service = Service(203)
    fast = Fast("no-idle-connection")
    answers = Answers()
    listener = stack(("a", "/a", service, (), fast))
    pending = listener(request(), answers)
    assert isinstance(pending, asyncio.Task)
    await pending
    assert answers.statuses == [203]
    assert service.calls == fast.calls  # one Call, the route matched once: what the fast path learnt is kept


async def test_a_started_fast_exchange_answers_later_exactly_once() -> None:
    fast = Fast("starts")
    answers = Answers()
    listener = stack(("a", "/a", Service(), (), fast))
    assert listener(request(), answers) is fast.started and answers.responses == []
    assert fast.respond is not None
    fast.respond(Response(200, [], b"later"))
    assert answers.statuses == [200]


async def test_a_fast_exchange_on_a_dead_connection_is_replayed_by_the_service() -> None:
    service = Service(200)
    fast = Fast("starts")
    answers = Answers()
    listener = stack(("a", "/a", service, (), fast))
    listener(request(), answers)
    assert fast.respond is not None
    fast.respond(None)  # a reused connection was found dead
    await settle()
    assert answers.statuses == [200] and service.calls == fast.calls


async def test_a_service_error_is_the_proxys_own_answer_and_a_crash_is_a_500() -> None:
    for error, status, reason in [(Unavailable("no_healthy_upstream"), 503, "no_healthy_upstream"),
                                  (RuntimeError("bug"), 500, "internal_error")]:
        answers = Answers()
        listener = stack(("a", "/a", Service(error=error), (), None))
        pending = listener(request(), answers)
        assert isinstance(pending, asyncio.Task)
        await pending
        assert answers.statuses == [status] and answers.responses[0].reason == reason


async def test_a_caller_that_goes_away_cancels_the_service_and_gets_no_answer() -> None:
    service = Service()
    service.release = asyncio.get_running_loop().create_future()
    answers = Answers()
    listener = stack(("a", "/a", service, (), None))
    pending = listener(request(), answers)
    assert isinstance(pending, asyncio.Task)
    await settle()
    assert len(service.calls) == 1
    pending.cancel()
    await settle()
    assert pending.done() and answers.responses == []
