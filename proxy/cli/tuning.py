"""Process settings for serving, made once by `signing-proxy run` in each worker before its
loop starts: the event loop, the garbage collector and the C allocator. Each is measured with
`bench/run.py` (docs/performance.md); none changes behaviour.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
import platform
import sys

# glibc mallopt(3) parameters.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Free heap kept instead of handed back to the kernel, and the size from which an allocation
# gets its own mapping: bodies held for signing (up to `limits.memoryBodyBytes`, 1 MiB by
# default, and their 256 KiB read chunks) are then served from the heap.
TRIM_THRESHOLD = 32 * 1024 * 1024
MMAP_THRESHOLD = 4 * 1024 * 1024


def tune_for_serving() -> None:
    install_uvloop()
    tune_gc()
    tune_malloc()


def install_uvloop() -> None:
    # Optional speed-up (`pip install signing-proxy[speed]`); asyncio's loop otherwise.
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def tune_gc() -> None:
    # Each request allocates a few hundred objects, so the default gen-0 threshold (700) ran a
    # collection every few requests (~5% of the CPU per tiny GET, measured with bench/ab.py runs).
    # Start-up objects (config, compiled connections, modules) are frozen out of every pass.
    # A request leaves no reference cycle (tests/dataplane/test_no_reference_cycles.py), so what it
    # allocates is freed as it goes and the collector seldom has anything to do.
    gc.freeze()
    gc.set_threshold(10_000, 20, 100)


def tune_malloc() -> bool:
    """Keep glibc from handing freed heap back after every large body (True when set).

    By default glibc trims the top of the heap once 2x its (self-adjusting) mmap threshold is
    free, about 2 MiB here: with a few 1 MiB bodies in flight the heap shrank and grew back on
    every request, and each regrowth faulted its pages in again, ~12% of the CPU of an HMAC
    POST of 1 MiB (perf). Kept: at most `TRIM_THRESHOLD` of free heap. Skipped on other C
    libraries, and when `GLIBC_TUNABLES` sets malloc tunables already (the operator's choice
    wins)."""
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    trim: int = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    mmap: int = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    return trim == 1 and mmap == 1  # mallopt(3): 1 on success
