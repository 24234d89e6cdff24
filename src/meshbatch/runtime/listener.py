"""A listener's request stack: what every request read on one of its connections goes through, in order.

    call       the request becomes a `Call` (service/call.py), its typed context
    span       a SERVER span, when tracing is on (closed with the answer, whatever path served it)
    checks     the listener's JWT (401) and policies (403), before any route is known: a refused caller learns
               nothing of the routes
    route      the first route that matches: matched once, here (404 when none)
    body       an HTTP/2 body still arriving (`request.upload`): a route that streams takes it as it comes; any
               other waits until it is whole (bounded by `limits.max_body_bytes`), then goes on
    checks     the route's own (policies, rate limits)
    serve      the route's fast path when it has one and it can start (an idle upstream connection), else its
               service in a task; a fast exchange that finds its reused connection dead is replayed by the service

Every admitted request is answered exactly once, through `answer`; what is under way is returned to the
connection, which cancels it when the caller goes away.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from meshbatch.errors import NoRoute, ProxyError
from meshbatch.http.message import Request, Response
from meshbatch.http.serialize import local_reply
from meshbatch.http.server import Answer
from meshbatch.routing.match import RouteTable
from meshbatch.service import Call, Check, Pending, RouteStack

if TYPE_CHECKING:  # the OpenTelemetry SDK is imported only when tracing is configured (telemetry/wiring.py)
    from meshbatch.telemetry.spans import RequestSpans

log = logging.getLogger("meshbatch.runtime")


class _Serving:
    """One call on its way through a route's stack: the answer callback of its fast path (itself, called once
    with the answer or with None), and of its task (`run`)."""

    __slots__ = ("answer", "call", "stack", "tracing")

    def __init__(self, call: Call, stack: RouteStack, answer: Answer, tracing: RequestSpans | None) -> None:
        self.call = call
        self.stack = stack
        self.answer = answer
        self.tracing = tracing

    def __call__(self, response: Response | None) -> None:
        if response is None:  # a reused connection was found dead: the general path replays the request
            asyncio.get_running_loop().create_task(self.run())
            return
        self.done(response)

    async def run(self) -> None:
        call = self.call
        try:
            response = await self.stack.service(call)
        except ProxyError as error:
            response = local_reply(error)
        except asyncio.CancelledError:
            if self.tracing is not None and call.span is not None:
                self.tracing.abandon(call.span)
            return  # the caller went away; nobody to answer
        except Exception:
            log.exception("route %s failed for %r", self.stack.name, call.request)
            response = local_reply(ProxyError("internal_error"))
        self.done(response)

    def done(self, response: Response) -> None:
        if self.tracing is not None and self.call.span is not None:
            self.tracing.close(self.call.span, self.call.request, response)
        self.answer(response)


class _Collecting:
    """A call whose route reads bodies whole, while its body (`request.upload`) is still arriving: served once it is
    whole (http/upload.py `collect`); cancelled, with what it started, when the caller goes away."""

    __slots__ = ("answer", "call", "cancelled", "inner", "listener", "stack")

    def __init__(self, listener: ListenerStack, call: Call, stack: RouteStack, answer: Answer) -> None:
        self.listener = listener
        self.call = call
        self.stack = stack
        self.answer = answer
        self.inner: Pending | None = None
        self.cancelled = False

    def ready(self) -> None:
        if not self.cancelled:
            self.call.request.upload = None  # whole: the body is `request.body`
            self.inner = self.listener.serve(self.call, self.stack, self.answer)

    def cancel(self) -> None:
        self.cancelled = True
        if self.inner is not None:
            self.inner.cancel()
        elif self.listener.tracing is not None and self.call.span is not None:
            self.listener.tracing.abandon(self.call.span)


class ListenerStack:
    """The dispatch of one listener's connections (http/server.py `ServerSettings.dispatch`)."""

    __slots__ = ("checks", "loop", "name", "routes", "tracing")

    def __init__(self, name: str, routes: RouteTable[RouteStack], checks: tuple[Check, ...],
                 loop: asyncio.AbstractEventLoop, tracing: RequestSpans | None = None) -> None:
        self.name = name
        self.routes = routes
        self.checks = checks
        self.loop = loop
        self.tracing = tracing

    def __call__(self, request: Request, answer: Answer) -> Pending | None:
        call = Call(request)
        tracing = self.tracing
        if tracing is not None:
            call.span = tracing.open(request)
        for check in self.checks:
            refused = check(call)
            if refused is not None:
                self._refuse(call, refused, answer)
                return None
        stack = self.routes.match(request)
        if stack is None:
            self._refuse(call, NoRoute("no_route", f"no route of listener {self.name!r} matches this request"), answer)
            return None
        request.route = stack.name
        upload = request.upload
        if upload is not None and not stack.streams:  # its body is still arriving, and the route reads it whole
            collecting = _Collecting(self, call, stack, answer)
            upload.collect(collecting.ready)
            return collecting
        return self.serve(call, stack, answer)

    def serve(self, call: Call, stack: RouteStack, answer: Answer) -> Pending | None:
        """The route's checks, then its fast path or its service (with a body as it arrives: the service)."""
        for check in stack.checks:
            refused = check(call)
            if refused is not None:
                self._refuse(call, refused, answer)
                return None
        serving = _Serving(call, stack, answer, self.tracing)
        fast = stack.fast
        if fast is not None and call.request.upload is None:
            started = fast(call, serving)
            if started is not None:
                return started
        return self.loop.create_task(serving.run())

    def _refuse(self, call: Call, error: ProxyError, answer: Answer) -> None:
        response = local_reply(error)
        if self.tracing is not None and call.span is not None:
            self.tracing.close(call.span, call.request, response)
        answer(response)


__all__ = ["ListenerStack"]
