"""Keep freed memory in the process instead of handing it back to the OS at once.

glibc serves large blocks (above a threshold that adapts up to 32 MiB) with ``mmap`` and
returns them on ``free``, so each training step page-faults its activations back in: on
the 2-core CPU machine that was 40% of a ProtoNet step (3.3 s of system time for 4.8 s of
compute). Raising glibc's mmap and trim thresholds makes freed activations reusable.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 1 << 30  # bytes: larger blocks still go straight to mmap


def keep_freed_memory() -> bool:
    """Set glibc's thresholds for this process; False where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, _THRESHOLD))
