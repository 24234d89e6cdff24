"""What a proxy does once it serves (`serve`, a worker of `run --workers N`): what start built is moved out of
the collector's sight, and the memory start freed goes back to the system.

Everything built by then (imported modules, the config snapshot) lives as long as the process. Frozen
(`gc.freeze`), it no longer makes each full collection walk the whole heap: those walks were tens of milliseconds
and set the batching p99. Start frees much more than it keeps (the compiler's work on every module imported
without a cached bytecode file, the validated config's JSON), and glibc keeps freed memory mapped unless asked:
`malloc_trim(0)` gives it back (3 MB of a plain proxy's idle resident memory; docs/performance.md, "Memory").
"""

from __future__ import annotations

import ctypes
import gc
import sys


def settle() -> None:
    gc.collect()
    gc.freeze()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).malloc_trim(0)
        except (AttributeError, OSError):  # not glibc (musl has no malloc_trim): nothing to give back this way
            pass


__all__ = ["settle"]
