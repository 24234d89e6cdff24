"""`filter`: keep the events for which a safe expression is true (see `meshbatch.pipeline.expr_parse`).

An event the expression cannot be evaluated on (arithmetic on a string, say) is dropped and counted as failed
(`on_error: drop`), or answers the request 422 (`on_error: reject`).
"""

from __future__ import annotations

from typing import Any

from meshbatch.config.plain import Filter
from meshbatch.pipeline.base import STAGE_FACTORIES, StageContext
from meshbatch.pipeline.expr_eval import EvalError, compile_expr
from meshbatch.pipeline.work import InvalidEvent, Work


class FilterStage:
    name = "filter"

    def __init__(self, options: Filter) -> None:
        self.expr = options.expr
        self.predicate = compile_expr(options.expr)
        self.reject = options.on_error == "reject"

    def __call__(self, work: Work) -> None:
        assert work.events is not None
        kept: list[Any] = []
        predicate = self.predicate
        tick = work.tick
        for event in work.events:
            tick()
            try:
                keep = predicate(event)
            except EvalError as exc:
                work.failed += 1
                if self.reject:
                    raise InvalidEvent("filter_error", f"the filter cannot be evaluated on an event: {exc}") from None
                continue
            if keep:
                kept.append(event)
            else:
                work.dropped += 1
        work.events = kept


@STAGE_FACTORIES.register("filter")
def _factory(options: Filter, context: StageContext) -> FilterStage:
    return FilterStage(options)


__all__ = ["FilterStage"]
