"""Replaying dead letters: back into the log through the route's pipeline, or raw when an operator says so.

A dead letter was parked at one of two places, which it keeps as its `stage`:
- `delivery`: the flusher parked it after `max_attempts` failed deliveries. It passed the pipeline on arrival,
  so it goes back into the log as it is (the fix was at the sink: a column type, a full disk).
- a pipeline stage, `pipeline[2].validate`: the pipeline refused it on arrival. It is run again through the
  route's current pipeline from that stage on (`Pipeline.resume`): an event that now passes goes into the log as
  the stages left it (transformed); one that is refused again stays a dead letter, and the answer says why; one
  that a filter now drops is removed (as the pipeline drops such an event on arrival). Letters parked before
  letters kept their stage count as the pipeline's when their reason is a `schema_violation`, else as delivery's.

`raw` replays every letter as it is, without the pipeline: the explicit way to store what the pipeline refuses.
The pipeline runs here, on the event loop, a few letters at a time (`STEP`), yielding between groups.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from meshbatch.ingest.logs.base import DELIVERY, EventLog
from meshbatch.pipeline import Pipeline

STEP = 64  # letters run through the pipeline per event-loop turn
MAX_LISTED = 100  # refusals listed in the answer (the count is whole)
_LEGACY_VALIDATE = "validate"  # the place of a letter parked before letters kept it, refused by validate


@dataclass
class ReplayReport:
    replayed: int = 0  # moved into the log
    dropped: int = 0  # removed: the pipeline's filter drops them now
    refused: list[tuple[str, str]] = field(default_factory=list)  # (id, reason): still dead letters
    raw: bool = False

    def payload(self) -> dict[str, Any]:
        return {"replayed": self.replayed, "dropped": self.dropped, "refused": len(self.refused),
                "refusals": [{"id": i, "reason": r} for i, r in self.refused[:MAX_LISTED]], "raw": self.raw}


def _place(letter: dict[str, Any]) -> str:
    stage = letter.get("stage")
    if stage:
        return str(stage)
    return _LEGACY_VALIDATE if str(letter.get("reason", "")).startswith("schema_violation: ") else DELIVERY


async def replay(log: EventLog, pipeline: Pipeline | None, ids: Sequence[str] | None, limit: int,
                 raw: bool = False) -> ReplayReport:
    """Move dead letters (these ids, or the oldest `limit`) back into the log; see the module's docstring."""
    if raw:
        return ReplayReport(await log.replay(ids, limit), raw=True)
    letters = await log.dead_letters(limit, ids)
    bodies: dict[str, bytes | None] = {}
    report = ReplayReport()
    for n, letter in enumerate(letters):
        if n and n % STEP == 0:
            await asyncio.sleep(0)
        event_id, body = str(letter["id"]), str(letter["body"]).encode("utf-8")
        place = _place(letter)
        if place == DELIVERY or pipeline is None:
            bodies[event_id] = body
            continue
        result = pipeline.resume(body, place)
        if result.error is not None:
            error = result.error
            report.refused.append((event_id, f"{error.reason}: {error.detail}" if error.detail else error.reason))
        elif result.dead:
            report.refused.append((event_id, result.dead[0][1]))
        elif result.events:
            bodies[event_id] = result.events[0]
        else:
            bodies[event_id] = None
            report.dropped += 1
    if bodies:
        report.replayed = await log.replay(None, len(bodies), bodies)
    return report


__all__ = ["ReplayReport", "replay"]
