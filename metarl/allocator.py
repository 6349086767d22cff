"""Keep freed memory in the process instead of handing it back to the OS at once.

glibc serves large blocks (above a threshold that adapts up to 32 MiB) with ``mmap`` and
returns them on ``free``, so each training step page-faults its activations back in: on
the 2-core CPU machine that was 40% of a ProtoNet step (3.3 s of system time for 4.8 s of
compute). Raising glibc's mmap and trim thresholds makes freed activations reusable.

The setting is global and one-way: it holds for the whole process, every thread and
library in it, until the process ends, and the process keeps up to its peak memory
instead of returning it. So it is opt-in, called only where it was measured to help: the
few-shot Omniglot recipe (``agents/fewshot_omniglot.py``) and the RL² recipes
(``agents/rl2_agent.py``: a PPO update on 250 trials of 100 steps frees and re-faults
hundreds of MB; an LSTM iteration runs 1.4x faster with it), whose agents set it when
built for training or evaluation, and the benchmarks that time it. The other recipes leave
glibc as it is.
``METARL_KEEP_FREED_MEMORY=0`` in the environment turns it off, for a process that must
hand memory back, or to measure the difference.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 1 << 30  # bytes: larger blocks still go straight to mmap
ENV = "METARL_KEEP_FREED_MEMORY"


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds to 1 GiB for the rest of this process (there
    is no undo); False where the C library is not glibc or ``METARL_KEEP_FREED_MEMORY=0``
    is set. Calling it again changes nothing."""
    if not sys.platform.startswith("linux") or os.environ.get(ENV) == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, _THRESHOLD))
