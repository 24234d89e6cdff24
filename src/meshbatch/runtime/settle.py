"""What a proxy does once it serves (`serve`, a worker of `run --workers N`): what start built is moved out of
the collector's sight, the collector is tuned for a proxy's heap, and the memory start freed goes back to the
system.

Everything built by then (imported modules, the config snapshot) lives as long as the process. Frozen
(`gc.freeze`), it no longer makes each full collection walk the whole heap: those walks were tens of milliseconds
and set the batching p99. Start frees much more than it keeps (the compiler's work on every module imported
without a cached bytecode file, the validated config's JSON), and glibc keeps freed memory mapped unless asked:
`malloc_trim(0)` gives it back (3 MB of a plain proxy's idle resident memory; docs/performance.md, "Memory").

The collector's youngest generation is collected every `YOUNG_THRESHOLD` net allocations of tracked objects
(Python's default is 700). A request makes a few dozen such objects and frees nearly all of them by their
reference counts when it is answered, so with the default most young collections walked the requests still in
flight, promoted them to the older generations and walked them again there: about a tenth of an HTTP/2 request's
CPU time, and its p99 (docs/performance.md, "The collector"). At 20,000 a young collection finds mostly
objects already freed, and the garbage it exists for (reference cycles) waits at most that many allocations.
`MESHBATCH_GC_THRESHOLD` sets another value (a positive integer; anything else is reported and the default
kept).
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import sys
from collections.abc import Mapping
from typing import Final

YOUNG_THRESHOLD: Final = 20_000
ENV: Final = "MESHBATCH_GC_THRESHOLD"
log = logging.getLogger("meshbatch")


def young_threshold(environ: Mapping[str, str]) -> int:
    """The youngest generation's threshold: `MESHBATCH_GC_THRESHOLD` when it is a positive integer, else (with a
    warning when it is set to anything else) `YOUNG_THRESHOLD`."""
    given = environ.get(ENV)
    if given is None:
        return YOUNG_THRESHOLD
    try:
        value = int(given)
    except ValueError:
        value = 0
    if value < 1:
        log.warning("%s=%r is not a positive integer: the collector keeps its threshold of %d", ENV, given[:40],
                    YOUNG_THRESHOLD)
        return YOUNG_THRESHOLD
    return value


def settle() -> None:
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold(os.environ), middle, old)
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).malloc_trim(0)
        except (AttributeError, OSError):  # not glibc (musl has no malloc_trim): nothing to give back this way
            pass


__all__ = ["ENV", "YOUNG_THRESHOLD", "settle", "young_threshold"]
