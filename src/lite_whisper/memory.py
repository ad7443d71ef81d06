"""How much memory this process has used: peak resident set size, as reports and benchmarks record it."""

from __future__ import annotations

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
