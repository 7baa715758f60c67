"""Keep freed tensor buffers in the heap of training processes (glibc malloc).

PyTorch's CPU tensors come from plain ``malloc``. glibc serves a block above its mmap threshold
(128 KiB at start, adapting up to 32 MiB) with a fresh ``mmap`` and gives it back with ``munmap``
when it is freed, so every batch's activations are page-faulted and zeroed by the kernel again. On
the long-sequence window protocol that was 1.9 million minor page faults per 4,096 rows (about a
third of the pass's time on this project's 2-core CI machine); with the thresholds raised, freed
buffers are reused and the faults disappear (see benchmarks/README.md, "Final evaluation cost").
PyTorch's CPU performance guide recommends a caching allocator (jemalloc, tcmalloc) for the same
reason; ``mallopt`` gets the effect without another dependency.

Only where memory comes from changes, never a computed number. A process keeps up to
``THRESHOLD_BYTES`` of freed memory instead of returning it to the system at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

THRESHOLD_BYTES = 1 << 30
_M_TRIM_THRESHOLD = -1  # <malloc.h>
_M_MMAP_THRESHOLD = -3


def description() -> str:
    """What ``keep_freed_buffers`` does on this platform, for environment.txt."""
    if platform.libc_ver()[0] != "glibc":
        return "system default (not glibc)"
    return f"glibc malloc, training processes: mmap_threshold={THRESHOLD_BYTES}, trim_threshold={THRESHOLD_BYTES}"


def keep_freed_buffers() -> bool:
    """Raise glibc's mmap and trim thresholds in this process; False where that is not possible."""
    if platform.libc_ver()[0] != "glibc":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, THRESHOLD_BYTES)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, THRESHOLD_BYTES))
