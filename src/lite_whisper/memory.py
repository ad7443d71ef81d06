"""How much memory this process has used: peak resident set size, as reports and benchmarks record it."""

from __future__ import annotations

import resource


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_rss_mb() -> float:
    return peak_rss_bytes() / 2**20
