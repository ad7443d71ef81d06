"""How much memory this process has used: peak resident set size, as reports and benchmarks record it."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import resource
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far.

    Linux: the high-water mark of this program's memory (VmHWM). getrusage's ru_maxrss survives exec: a
    process started from a big parent reports the parent's peak (seen: every benchmark child of a 7.4 GB parent
    read 7.38 GB, whatever it held). Elsewhere getrusage's figure (KiB on Linux, bytes on macOS)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024


def peak_rss_mb() -> float:
    return peak_rss_bytes() / 2**20


def return_freed_memory() -> None:
    """Collect garbage and hand the allocator's free pages back to the system (glibc's `malloc_trim`).

    Tensors of a few MB come from glibc's heap once its mmap threshold has risen (it rises past every large
    block freed, up to 32 MB), and freed heap memory stays in the process's resident set: a 2.5 GB copy of an
    encoder dropped mid-export kept counting until the end. No-op where the C library has no `malloc_trim`."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.lru_cache(maxsize=1)
def _malloc_trim():  # looked up once
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # musl and other C libraries have no malloc_trim
        return None
